package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func nsLink(t *testing.T, pid int, ns string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSpawnConfines starts a process as QEMU is started and checks, from
// the outside, what it was given.
func TestSpawnConfines(t *testing.T) {
	testreq.Root(t)
	// The child is this test binary as a sleeper (TestMain); spawn passes
	// the environment on. StartProcess returns after the exec, so what
	// /proc shows is what the program runs with.
	t.Setenv(envSleeper, "1")
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	shared := t.TempDir()
	rootDir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(rootDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := spawn(spawnSpec{
		root: &rootSpec{
			dir:       rootDir,
			readOnly:  append(append([]string(nil), systemPaths...), os.Args[0]),
			readWrite: []string{shared},
			devices:   qemuDevices,
		},
		path:       os.Args[0],
		argv:       []string{os.Args[0], "-test.run=^$"},
		files:      []*os.File{devNull, os.Stderr, os.Stderr},
		keepCaps:   qemuCaps,
		cloneFlags: unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		_, _ = p.Wait()
	})
	st := procStatus(t, p.Pid)
	want := fmt.Sprintf("%016x", capMask(qemuCaps))
	for _, k := range []string{"CapBnd", "CapPrm", "CapEff"} {
		if st[k] != want {
			t.Errorf("%s = %s, want %s", k, st[k], want)
		}
	}
	for k, v := range map[string]string{"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1"} {
		if st[k] != v {
			t.Errorf("%s = %s, want %s", k, st[k], v)
		}
	}
	if gid := strings.Fields(st["Gid"]); len(gid) < 2 || gid[0] != strconv.Itoa(confinedGID) || gid[1] != "0" {
		t.Errorf("Gid = %q, want real %d, effective 0", st["Gid"], confinedGID)
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		if nsLink(t, p.Pid, ns) == nsLink(t, os.Getpid(), ns) {
			t.Errorf("the process shares the %s namespace of the caller (%s)", ns, nsLink(t, p.Pid, ns))
		}
	}
	// Its file system is what it was given, nothing more.
	root := fmt.Sprintf("/proc/%d/root", p.Pid)
	for path, want := range map[string]bool{
		shared: true, os.Args[0]: true, "/usr/bin": true, "/dev/null": true,
		"/etc/hostname": false, "/root": false, "/var": false, "/dev/sda": false, rootDir: false,
	} {
		if _, err := os.Stat(root + path); (err == nil) != want {
			t.Errorf("%s in the process's root: present = %v, want %v", path, err == nil, want)
		}
	}
	if err := os.WriteFile(root+shared+"/f", nil, 0o600); err != nil {
		t.Errorf("the read-write path is not writable: %v", err)
	}
	if err := os.WriteFile(root+"/usr/f", nil, 0o600); err == nil {
		t.Error("/usr is writable")
	}
	if _, err := os.Stat("/etc/hostname"); err != nil {
		t.Errorf("the caller's own root changed: %v", err)
	}
	if !strings.Contains(st["NSpid"], "\t1") && !strings.HasSuffix(st["NSpid"], " 1") {
		t.Errorf("NSpid = %q: not pid 1 of its own pid namespace", st["NSpid"])
	}
}

// TestQEMUSandboxCache: the probe is cached per binary and redone when the
// binary changes.
func TestQEMUSandboxCache(t *testing.T) {
	testreq.Root(t) // the cache is trusted only when root owns it
	dir := t.TempDir()
	qemu := dir + "/qemu"
	count := dir + "/runs"
	script := "#!/bin/sh\necho x >> " + count + "\nexit 0\n"
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Config{QEMUPath: qemu, CacheDir: dir + "/cache"}
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "x")
	}
	if s := qemuSandbox(t.Context(), c); !s.Complete() {
		t.Fatalf("probe = %+v", s)
	}
	first := runs()
	if s := qemuSandbox(t.Context(), c); !s.Complete() || runs() != first {
		t.Fatalf("second probe ran QEMU again (%d runs, then %d) or changed: %+v", first, runs(), s)
	}
	if err := os.WriteFile(qemu, []byte(script+"# changed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	qemuSandbox(t.Context(), c)
	if runs() == first {
		t.Fatal("a changed binary was not probed again")
	}
}

// TestQEMUSandboxPartialIsLogged: a QEMU that lacks an option runs with the
// rest, and says so at every start.
func TestQEMUSandboxPartialIsLogged(t *testing.T) {
	qemu := filepath.Join(t.TempDir(), "qemu")
	script := "#!/bin/sh\ncase \"$2\" in *spawn*) echo \"Invalid parameter 'spawn'\" >&2; exit 1;; esac\nexit 0\n"
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var logged []string
	c := &Config{QEMUPath: qemu, Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	s := qemuSandbox(t.Context(), c)
	if got, want := s.Arg(), "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny"; got != want {
		t.Errorf("-sandbox %q, want %q", got, want)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "spawn") {
		t.Errorf("logged %q, want one warning naming spawn", logged)
	}
}
