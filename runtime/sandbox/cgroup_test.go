package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

func TestHostCgroupRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"/docker/../../sys", "/", "system.slice:docker:a/b"} {
		spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: p}}
		if _, err := hostCgroup(Options{ID: "abc", Spec: spec}, t.TempDir(), 256); err == nil {
			t.Errorf("cgroupsPath %q accepted", p)
		}
	}
}

// TestHostCgroupLifecycle: the limits of the spec reach the cgroup of a placed process,
// applyResources changes them, and Cleanup of the state directory removes the cgroup.
func TestHostCgroupLifecycle(t *testing.T) {
	testreq.Root(t)
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err != nil {
		testreq.Skipf(t, "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu")
	}
	dir := fmt.Sprintf("/kata-deploy-test/sandbox-%d", os.Getpid())
	quota := func(q int64) *specs.LinuxResources {
		return &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: ptrU64(100000)}}
	}
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: dir, Resources: quota(50000)}}
	stateDir := filepath.Join(t.TempDir(), "abc")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cg, err := hostCgroup(Options{ID: "abc", Spec: spec, Config: config.Default()}, stateDir, 256)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{StateDir: stateDir, cgroup: cg, memoryMiB: 256}
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := cg.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	quotaFile := filepath.Join("/sys/fs/cgroup/cpu", dir, "cpu.cfs_quota_us")
	read := func() string { b, _ := os.ReadFile(quotaFile); return strings.TrimSpace(string(b)) }
	if got := read(); got != "50000" {
		t.Fatalf("quota %q, want 50000", got)
	}
	if err := s.applyResources(quota(150000)); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "150000" {
		t.Fatalf("quota after applyResources %q, want 150000", got)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := Cleanup(stateDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(quotaFile)); !os.IsNotExist(err) {
		t.Fatalf("the cgroup survived Cleanup: %v", err)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Fatalf("the state directory survived Cleanup: %v", err)
	}
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kata-deploy-test")
	for _, r := range roots {
		_ = os.Remove(r)
	}
}

func ptrU64(v uint64) *uint64 { return &v }
