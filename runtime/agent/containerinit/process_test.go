package containerinit

import (
	"errors"
	"io/fs"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLookPath(t *testing.T) {
	files := map[string]error{
		"/bin/sh":            nil,
		"/usr/local/bin/app": nil,
		"/usr/bin/app":       nil,
		"/usr/bin/noexec":    &fs.PathError{Op: "exec", Path: "/usr/bin/noexec", Err: unix.EACCES},
		"/sbin/noexec":       nil,
		"./rel":              nil,
	}
	check := func(p string) error {
		if err, ok := files[p]; ok {
			return err
		}
		return &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	tests := []struct {
		name, path string
		want       string
		wantErr    error
	}{
		{"sh", "/usr/bin:/bin", "/bin/sh", nil},
		{"app", "/usr/local/bin:/usr/bin", "/usr/local/bin/app", nil},
		{"app", "/usr/bin:/usr/local/bin", "/usr/bin/app", nil},
		{"/bin/sh", "", "/bin/sh", nil},
		{"/bin/missing", "/bin", "", fs.ErrNotExist},
		{"missing", "/usr/bin:/bin", "", errNotFound},
		{"noexec", "/usr/bin", "", fs.ErrPermission},
		{"noexec", "/usr/bin:/sbin", "/sbin/noexec", nil}, // execvp keeps looking
		{"rel", ":/bin", "./rel", nil},                    // an empty entry is "."
		{"", "/bin", "", errNotFound},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.name, tt.path, check)
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q, %v", tt.name, tt.path, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{errNotFound, 127},
		{&fs.PathError{Op: "stat", Path: "/x", Err: unix.ENOENT}, 127},
		{unix.ENOENT, 127},
		{unix.ENOTDIR, 127},
		{unix.EACCES, 126},
		{unix.ENOEXEC, 126},
		{&fs.PathError{Op: "exec", Path: "/x", Err: unix.EACCES}, 126},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestEnvValue(t *testing.T) {
	env := []string{"A=1", "PATH=/bin", "B", "PATH=/usr/bin:/bin", "EMPTY="}
	if v, ok := envValue(env, "PATH"); !ok || v != "/usr/bin:/bin" {
		t.Errorf("PATH = %q, %v", v, ok)
	}
	if v, ok := envValue(env, "EMPTY"); !ok || v != "" {
		t.Errorf("EMPTY = %q, %v", v, ok)
	}
	if _, ok := envValue(env, "B"); ok {
		t.Errorf("a bare word is not a variable")
	}
	if _, ok := envValue(env, "PAT"); ok {
		t.Errorf("a prefix is not a variable")
	}
}

func TestRlimitResource(t *testing.T) {
	tests := []struct {
		name string
		want int
		ok   bool
	}{
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, true},
		{"RLIMIT_NPROC", unix.RLIMIT_NPROC, true},
		{"RLIMIT_CORE", unix.RLIMIT_CORE, true},
		{"RLIMIT_MEMLOCK", unix.RLIMIT_MEMLOCK, true},
		{"RLIMIT_STACK", unix.RLIMIT_STACK, true},
		{"RLIMIT_RTTIME", unix.RLIMIT_RTTIME, true},
		{"RLIMIT_AS", unix.RLIMIT_AS, true},
		{"nofile", 0, false},
		{"RLIMIT_BOGUS", 0, false},
	}
	for _, tt := range tests {
		got, ok := rlimitResource(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("rlimitResource(%q) = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	// Every rlimit the kernel knows has a name.
	seen := map[int]bool{}
	for _, n := range []string{"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
		"RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
		"RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"} {
		r, ok := rlimitResource(n)
		if !ok || seen[r] {
			t.Errorf("%s: %d %v (duplicate %v)", n, r, ok, seen[r])
		}
		seen[r] = true
	}
	if len(seen) != 16 {
		t.Errorf("%d distinct rlimits, want 16", len(seen))
	}
}
