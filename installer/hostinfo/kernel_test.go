package hostinfo

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestKernelRelease(t *testing.T) {
	want, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		testreq.Skipf(t, "no /proc/sys/kernel/osrelease to compare with: %v", err)
	}
	got, err := KernelRelease()
	if err != nil {
		t.Fatal(err)
	}
	if got != strings.TrimSpace(string(want)) {
		t.Errorf("KernelRelease = %q, /proc says %q", got, want)
	}
}

// fsType finds the filesystem type mounted exactly at mountpoint in /proc/self/mountinfo (the
// last mount wins, as it hides the ones below).
func fsType(t *testing.T, mountpoint string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		testreq.Skipf(t, "no /proc/self/mountinfo: %v", err)
	}
	defer f.Close()
	typ := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || len(fields) < 5 || fields[4] != mountpoint {
			continue
		}
		if post := strings.Fields(post); len(post) > 0 {
			typ = post[0]
		}
	}
	return typ
}

func TestCgroupVersionThisHost(t *testing.T) {
	typ := fsType(t, "/sys/fs/cgroup")
	want := map[string]int{"cgroup2": 2, "tmpfs": 1, "cgroup": 1}[typ]
	if want == 0 {
		testreq.Skipf(t, "/sys/fs/cgroup is %q here, not a cgroup mount", typ)
	}
	got, err := CgroupVersion("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("CgroupVersion = %d, but /sys/fs/cgroup is %s", got, typ)
	}
}

func TestCgroupVersionErrors(t *testing.T) {
	if _, err := CgroupVersion("/nonexistent/cgroup"); err == nil || !strings.Contains(err.Error(), "statfs") {
		t.Errorf("missing mountpoint: err = %v", err)
	}
	if typ := fsType(t, "/proc"); typ == "proc" {
		if _, err := CgroupVersion("/proc"); err == nil || !strings.Contains(err.Error(), "not a cgroup mount") {
			t.Errorf("/proc: err = %v", err)
		}
	}
}

func TestIsRoot(t *testing.T) {
	if IsRoot() != (os.Geteuid() == 0) {
		t.Errorf("IsRoot = %v with euid %d", IsRoot(), os.Geteuid())
	}
}
