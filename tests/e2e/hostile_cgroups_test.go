package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The VM sizes what the guest sees; these tests check from the host that QEMU itself runs in the
// container's cgroup with the container's limits, whatever the guest does.

const cgroupRoot = "/sys/fs/cgroup"

// cgroupV2 reports whether the host runs the unified hierarchy only.
func cgroupV2() bool {
	_, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers"))
	return err == nil
}

// procCgroups reads /proc/<pid>/cgroup: controller ("" for v2) -> path.
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// cgroupFile is the path of a controller's file in pid's cgroup (v1: the controller's
// hierarchy; v2: the unified one, where v2name is the file's name).
func cgroupFile(t *testing.T, pid int, controller, v1name, v2name string) string {
	t.Helper()
	cgs := procCgroups(t, pid)
	if cgroupV2() {
		return filepath.Join(cgroupRoot, cgs[""], v2name)
	}
	p, ok := cgs[controller]
	if !ok {
		t.Fatalf("pid %d has no %s cgroup: %v", pid, controller, cgs)
	}
	return filepath.Join(cgroupRoot, controller, p, v1name)
}

func readCgroupFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// taskPid is the pid Docker reports for a container: QEMU's, for a kata container.
func taskPid(t *testing.T, name string) int {
	t.Helper()
	res := docker(t, "", "inspect", "-f", "{{.State.Pid}}", name)
	pid, err := strconv.Atoi(strings.TrimSpace(res.stdout))
	if res.code != 0 || err != nil || pid <= 0 {
		t.Fatalf("docker inspect %s: pid %q: %s", name, res.stdout, res.stderr)
	}
	comm := readCgroupFile(t, fmt.Sprintf("/proc/%d/comm", pid))
	if !strings.HasPrefix(comm, "qemu") {
		t.Fatalf("the task pid %d is %q, not QEMU", pid, comm)
	}
	return pid
}

// cpuTicks is utime+stime of pid in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseUint(fields[14-3], 10, 64)
	stime, _ := strconv.ParseUint(fields[15-3], 10, 64)
	return utime + stime
}

// nrThrottled is how many CFS periods the cgroup's quota throttled.
func nrThrottled(t *testing.T, statFile string) uint64 {
	t.Helper()
	for _, line := range strings.Split(readCgroupFile(t, statFile), "\n") {
		if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	t.Fatalf("%s has no nr_throttled", statFile)
	return 0
}

const clockTicks = 100 // USER_HZ on Linux/x86_64

// TestHostileCgroupsLimitsOnQEMU: a kata container's limits are on QEMU's host cgroup, which is
// the container's own (not the root cgroup), the CPU quota holds a guest busy loop to half a
// core on the host, and the cgroup is gone after docker rm.
func TestHostileCgroupsLimitsOnQEMU(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "--cpus", "0.5", "--memory", "256m", "--pids-limit", "200", "--cpuset-cpus", "0",
		"busybox", "sh", "-c", "while :; do :; done")
	id := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.Id}}", name).stdout)
	pid := taskPid(t, name)

	cgs := procCgroups(t, pid)
	for _, c := range []string{"cpu", "memory", "pids", "cpuset"} {
		if cgroupV2() {
			c = ""
		}
		if p := cgs[c]; p == "/" || !strings.Contains(p, id) {
			t.Errorf("QEMU (pid %d) is in the %q cgroup %q, not the container's (%s)", pid, c, p, id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	quota := cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
	if got := readCgroupFile(t, quota); got != "50000" && got != "50000 100000" {
		t.Errorf("%s = %q, want 50000 (--cpus 0.5)", quota, got)
	}
	memLimit := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max")
	limit, err := strconv.ParseInt(readCgroupFile(t, memLimit), 10, 64)
	if err != nil || limit < 256<<20 || limit > 1<<30 {
		t.Errorf("%s = %d (%v), want the VM's RAM plus QEMU's overhead: above 256 MiB, below 1 GiB", memLimit, limit, err)
	}
	usage := cgroupFile(t, pid, "memory", "memory.usage_in_bytes", "memory.current")
	if u, _ := strconv.ParseInt(readCgroupFile(t, usage), 10, 64); u < 32<<20 {
		t.Errorf("%s = %d: QEMU's memory is not charged to the container's cgroup", usage, u)
	}
	if got := readCgroupFile(t, cgroupFile(t, pid, "pids", "pids.max", "pids.max")); got != "200" {
		t.Errorf("pids.max = %q, want 200 (--pids-limit 200)", got)
	}
	if got := readCgroupFile(t, cgroupFile(t, pid, "cpuset", "cpuset.cpus", "cpuset.cpus.effective")); got != "0" {
		t.Errorf("cpuset.cpus = %q, want 0 (--cpuset-cpus 0)", got)
	}

	// The busy loop runs in the guest; on the host QEMU may use half a core. The machine is
	// shared and noisy: the bound leaves margin. The guest enforces the same quota on the
	// container's cgroup, so QEMU mostly stays under it and the host's throttle counter may stay
	// at zero: it is logged, not required.
	cpuStat := cgroupFile(t, pid, "cpu", "cpu.stat", "cpu.stat")
	time.Sleep(2 * time.Second)
	throttled0, ticks0, t0 := nrThrottled(t, cpuStat), cpuTicks(t, pid), time.Now()
	time.Sleep(10 * time.Second)
	ticks1, elapsed := cpuTicks(t, pid), time.Since(t0)
	cores := float64(ticks1-ticks0) / clockTicks / elapsed.Seconds()
	throttled := nrThrottled(t, cpuStat) - throttled0
	t.Logf("QEMU used %.2f cores over %s with --cpus 0.5; throttled %d times", cores, elapsed.Round(time.Millisecond), throttled)
	if cores > 0.7 {
		t.Errorf("QEMU used %.2f cores running a guest busy loop with --cpus 0.5: the quota is not enforced on the host", cores)
	}

	dirs := []string{filepath.Dir(quota), filepath.Dir(memLimit)}
	if res := docker(t, "", "rm", "-f", name); res.code != 0 {
		t.Fatalf("docker rm -f: %s", res.stderr)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("the container's cgroup %s is still there after docker rm (%v)", d, err)
		}
	}
}

// TestHostileCgroupsWithoutLimits: a container without limits still gets its own cgroup for QEMU
// (so it is accounted and `docker update` has a place to put limits), and no limit is invented.
func TestHostileCgroupsWithoutLimits(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "busybox", "sleep", "600")
	id := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.Id}}", name).stdout)
	pid := taskPid(t, name)
	memLimit := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max")
	if !strings.Contains(memLimit, id) {
		t.Fatalf("QEMU's memory cgroup is %s, not the container's (%s)", filepath.Dir(memLimit), id)
	}
	if got := readCgroupFile(t, cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max")); got != "-1" && !strings.HasPrefix(got, "max") {
		t.Errorf("CPU quota %q without --cpus", got)
	}
	if res := docker(t, "", "rm", "-f", name); res.code != 0 {
		t.Fatalf("docker rm -f: %s", res.stderr)
	}
	if _, err := os.Stat(filepath.Dir(memLimit)); !os.IsNotExist(err) {
		t.Errorf("the container's cgroup %s is still there after docker rm (%v)", filepath.Dir(memLimit), err)
	}
}
