package hostcgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// limitFile is where a limit shows on this host's cgroup version.
func limitFile(t *testing.T, dir, v1Controller, v1File, v2File string) string {
	t.Helper()
	if cgroups.Mode() == cgroups.Unified {
		return filepath.Join(unifiedMount, dir, v2File)
	}
	return filepath.Join(unifiedMount, v1Controller, dir, v1File)
}

// removeEverywhere removes dir and its parent from every mounted hierarchy (the test's leftovers).
func removeEverywhere(dir string) {
	roots, _ := filepath.Glob(filepath.Join(unifiedMount, "*"))
	roots = append(roots, unifiedMount)
	for _, r := range roots {
		_ = os.Remove(filepath.Join(r, dir))
		_ = os.Remove(filepath.Join(r, filepath.Dir(dir)))
	}
}

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestManagerPlacesLimitsAndCleansUp runs against the host's cgroupfs: a process added lands in
// the cgroup with its limits, and Cleanup removes the cgroup this manager created, also from a
// fresh process (the shim died) that only has the record.
func TestManagerPlacesLimitsAndCleansUp(t *testing.T) {
	testreq.Root(t)
	dir := fmt.Sprintf("/kata-deploy-test/hostcgroup-%d", os.Getpid())
	state := filepath.Join(t.TempDir(), "cgroup.json")
	res := Resources(&specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Cpus: "0"},
		Memory: &specs.LinuxMemory{Limit: ptr(int64(256 * mib))},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(200))},
	}, 384)
	m := New(Path{Dir: dir}, res, state)
	t.Cleanup(func() { _ = Cleanup(state); removeEverywhere(dir) })
	a, b := sleeper(t), sleeper(t)
	for _, p := range []*exec.Cmd{a, b} {
		if err := m.Add(p.Process.Pid); err != nil {
			t.Fatalf("Add(%d): %v", p.Process.Pid, err)
		}
		if cg := readTrim(t, "/proc/"+strconv.Itoa(p.Process.Pid)+"/cgroup"); !strings.Contains(cg, dir+"\n") && !strings.HasSuffix(cg, dir) {
			t.Fatalf("pid %d is not in %s:\n%s", p.Process.Pid, dir, cg)
		}
	}
	wantMem := strconv.Itoa((384 + QEMUOverheadMiB) * mib)
	for _, c := range []struct{ file, want string }{
		{limitFile(t, dir, "memory", "memory.limit_in_bytes", "memory.max"), wantMem},
		{limitFile(t, dir, "pids", "pids.max", "pids.max"), "200"},
		{limitFile(t, dir, "cpuset", "cpuset.cpus", "cpuset.cpus"), "0"},
	} {
		if got := readTrim(t, c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	quota := limitFile(t, dir, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if got := readTrim(t, quota); got != "50000" && got != "50000 100000" {
		t.Errorf("%s = %q, want a 50%% quota", quota, got)
	}
	// Update, as `docker update` will.
	if err := m.Update(Resources(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(300))}}, 0)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := readTrim(t, limitFile(t, dir, "pids", "pids.max", "pids.max")); got != "300" {
		t.Errorf("pids.max after Update = %q, want 300", got)
	}
	// Not removable while a process is in it: Cleanup says so and keeps the record.
	if err := Cleanup(state); err == nil {
		t.Fatal("Cleanup succeeded while processes are in the cgroup")
	}
	for _, p := range []*exec.Cmd{a, b} {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	if err := Cleanup(state); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := os.Stat(limitFile(t, dir, "memory", "", "")); !os.IsNotExist(err) {
		t.Fatalf("the cgroup is still there after Cleanup (%v)", err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the record is still there after Cleanup (%v)", err)
	}
	if err := Cleanup(state); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}

// TestCleanupLeavesForeignCgroups: a cgroup that existed before the VM (someone else's) and a
// record naming a path outside what ParsePath gives are never removed.
func TestCleanupLeavesForeignCgroups(t *testing.T) {
	testreq.Root(t)
	dir := fmt.Sprintf("/kata-deploy-test/foreign-%d", os.Getpid())
	foreign := limitFile(t, dir, "cpu", "", "")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeEverywhere(dir) })
	state := filepath.Join(t.TempDir(), "cgroup.json")
	m := New(Path{Dir: dir}, nil, state)
	p := sleeper(t)
	if err := m.Add(p.Process.Pid); err != nil {
		t.Fatal(err)
	}
	_ = p.Process.Kill()
	_ = p.Wait()
	if err := Cleanup(state); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("Cleanup removed a cgroup it did not create: %v", err)
	}

	for _, bad := range []string{`{"dir":"/","created":true}`, `{"dir":"/docker/../..","created":true}`, `{"dir":"docker","created":true}`} {
		if err := os.WriteFile(state, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Cleanup(state); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Cleanup of record %s = %v, want a refusal", bad, err)
		}
	}
}

// TestBlkioWeight: the weight lands in blkio.weight (CFQ) or blkio.bfq.weight (BFQ), and a
// kernel with neither refuses it rather than running without it.
func TestBlkioWeight(t *testing.T) {
	testreq.Root(t)
	if cgroups.Mode() == cgroups.Unified {
		testreq.Skipf(t, "cgroup v1 only: v2 has io.weight, written by containerd/cgroups")
	}
	dir := fmt.Sprintf("/kata-deploy-test/blkio-%d", os.Getpid())
	state := filepath.Join(t.TempDir(), "cgroup.json")
	m := New(Path{Dir: dir}, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(300))}}, state)
	t.Cleanup(func() { _ = Cleanup(state); removeEverywhere(dir) })
	p := sleeper(t)
	err := m.Add(p.Process.Pid)
	var file string
	for _, f := range []string{blkioWeight, blkioBFQWeight} {
		if _, err := os.Stat(filepath.Join(blkioRoot, f)); err == nil {
			file = filepath.Join(blkioRoot, dir, f)
			break
		}
	}
	if file == "" {
		if err == nil || !strings.Contains(err.Error(), "neither") {
			t.Fatalf("Add with a weight on a kernel without blkio weights = %v, want a refusal", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, file); !strings.HasSuffix(got, "300") {
		t.Fatalf("%s = %q, want 300", file, got)
	}
	_ = p.Process.Kill()
	_ = p.Wait()
}
