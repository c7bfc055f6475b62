package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"golang.org/x/sys/unix"
)

// TestDevicesCgroupCreate runs create and join against a directory shaped
// like a devices controller (regular files stand in for its control files).
func TestDevicesCgroupCreate(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	d := &devicesCgroup{fd: fd}
	for _, bad := range []string{"", ".", "..", "../escape", "a/b", ".hidden", "-x", string(make([]byte, 200))} {
		if err := d.create(bad, nil, 1); err == nil {
			t.Errorf("create(%q) succeeded", bad)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused name created %v", entries)
	}
	// A symlink planted where a control file should be is not followed.
	if err := os.Mkdir(filepath.Join(dir, "evil"), 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "evil", "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	if err := d.join("evil", 7); err == nil {
		t.Error("join wrote through a symlink")
	}
	if b, _ := os.ReadFile(target); len(b) != 0 {
		t.Errorf("the symlink's target was written: %q", b)
	}

	id := "0123abcd"
	if err := os.Mkdir(filepath.Join(dir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"devices.allow", "devices.deny", "cgroup.procs"} {
		if err := os.WriteFile(filepath.Join(dir, id, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writes := []containerinit.DeviceWrite{{File: "devices.deny", Line: "a"}, {File: "devices.allow", Line: "c 1:3 rwm"}}
	if err := d.create(id, writes, 42); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"devices.deny": "a", "devices.allow": "c 1:3 rwm", "cgroup.procs": "42"} {
		if b, _ := os.ReadFile(filepath.Join(dir, id, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if err := d.create(id, []containerinit.DeviceWrite{{File: "no-such-file", Line: "a"}}, 42); err == nil {
		t.Error("a failed rule write was not reported")
	}
}
