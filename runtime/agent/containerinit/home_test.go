package containerinit

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestHomeIn(t *testing.T) {
	const passwd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
nohome:x:1000:1000:nohome::/bin/sh
dup:x:65534:65534:second:/elsewhere:/bin/false
`
	tests := []struct {
		uid  int
		want string
	}{
		{0, "/root"},
		{1, "/usr/sbin"},
		{65534, "/nonexistent"}, // the first entry wins, as with getpwuid
		{1000, "/"},             // an empty home field
		{4242, "/"},             // not listed
	}
	for _, tt := range tests {
		if got := homeIn(strings.NewReader(passwd), tt.uid); got != tt.want {
			t.Errorf("homeIn(uid %d) = %q, want %q", tt.uid, got, tt.want)
		}
	}
}

func TestHomeOf(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if err := os.WriteFile(file, []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		file:                         "/root",
		filepath.Join(dir, "absent"): "/",
		fifo:                         "/", // never blocks on a FIFO the image put there
		dir:                          "/",
	} {
		if got := homeOf(path, 0); got != want {
			t.Errorf("homeOf(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestSetDefaultHomeKeepsTheSpecsHome(t *testing.T) {
	p := &specs.Process{Env: []string{"PATH=/bin", "HOME=/data"}}
	setDefaultHome(p)
	if !slices.Equal(p.Env, []string{"PATH=/bin", "HOME=/data"}) {
		t.Errorf("env = %q, want HOME=/data kept and nothing added", p.Env)
	}
	p = &specs.Process{Env: []string{"HOME="}} // set, even empty: runc keeps it too
	setDefaultHome(p)
	if len(p.Env) != 1 {
		t.Errorf("env = %q, want the empty HOME kept", p.Env)
	}
}
