package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// execIn runs a command in a running container and returns its trimmed stdout.
func execIn(t *testing.T, name string, args ...string) string {
	t.Helper()
	res := docker(t, "", append([]string{"exec", name}, args...)...)
	if res.code != 0 {
		t.Fatalf("docker exec %s %v: exit %d: %s", name, args, res.code, res.stderr)
	}
	return strings.TrimSpace(res.stdout)
}

// cgroupLayout names the files a container reads its limits from, as Docker lays them out for the
// host's cgroup version (runc's layout, which the guest follows).
type cgroupLayout struct {
	v1                      bool
	memory, swap, cpu, pids string
	writableDir, fsMagic    string
	cpuQuota                func(quota string) string // what the cpu file holds for a quota, period 100000
	swapValue               func(mem, memSwap int) int
}

func hostCgroupLayout(t *testing.T) cgroupLayout {
	t.Helper()
	res := docker(t, "", "info", "-f", "{{.CgroupVersion}}")
	if strings.TrimSpace(res.stdout) == "1" {
		return cgroupLayout{v1: true, memory: "/sys/fs/cgroup/memory/memory.limit_in_bytes", swap: "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
			cpu: "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", pids: "/sys/fs/cgroup/pids/pids.max", writableDir: "/sys/fs/cgroup/pids", fsMagic: "1021994",
			cpuQuota: func(q string) string { return q }, swapValue: func(mem, memSwap int) int { return memSwap }}
	}
	return cgroupLayout{memory: "/sys/fs/cgroup/memory.max", swap: "/sys/fs/cgroup/memory.swap.max", cpu: "/sys/fs/cgroup/cpu.max",
		pids: "/sys/fs/cgroup/pids.max", writableDir: "/sys/fs/cgroup", fsMagic: "63677270",
		cpuQuota: func(q string) string { return q + " 100000" }, swapValue: func(mem, memSwap int) int { return memSwap - mem }}
}

// memTotalKB is the guest's MemTotal as the container sees it.
func memTotalKB(t *testing.T, name string) int {
	t.Helper()
	var kb int
	out := execIn(t, name, "grep", "MemTotal", "/proc/meminfo")
	if _, err := fmt.Sscanf(out, "MemTotal: %d kB", &kb); err != nil {
		t.Fatalf("MemTotal from %q: %v", out, err)
	}
	return kb
}

// TestKataUpdate: docker update changes the container's cgroup in the guest (cpu.max,
// memory.max, pids.max as the container reads them), a memory limit beyond the VM's RAM grows the
// VM by hot-plugged RAM, a lower one only lowers the cgroup's limit, and an update that changes
// nothing (a restart policy) succeeds.
func TestKataUpdate(t *testing.T) {
	requireKata(t)
	cg := hostCgroupLayout(t)
	name := fmt.Sprintf("kata-update-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "--memory", "200m", "busybox", "sleep", "600"); res.code != 0 {
		t.Fatalf("docker run: %s", res.stderr)
	}
	if got := execIn(t, name, "cat", cg.memory); got != strconv.Itoa(200<<20) {
		t.Errorf("memory.max at create = %q, want %d", got, 200<<20)
	}
	if res := docker(t, "", "update", "--restart", "on-failure:3", name); res.code != 0 {
		t.Errorf("docker update --restart (no resource change): %s", res.stderr)
	}

	if res := docker(t, "", "update", "--cpu-quota", "15000", "--cpu-period", "100000", "--pids-limit", "50", name); res.code != 0 {
		t.Fatalf("docker update --cpu-quota: %s", res.stderr)
	}
	if got, want := execIn(t, name, "cat", cg.cpu), cg.cpuQuota("15000"); got != want {
		t.Errorf("%s after update = %q, want %q", cg.cpu, got, want)
	}
	if got := execIn(t, name, "cat", cg.pids); got != "50" {
		t.Errorf("pids.max after update = %q, want 50", got)
	}

	before := memTotalKB(t, name)
	if res := docker(t, "", "update", "--memory", "400m", "--memory-swap", "600m", name); res.code != 0 {
		t.Fatalf("docker update --memory 400m: %s", res.stderr)
	}
	if got := execIn(t, name, "cat", cg.memory); got != strconv.Itoa(400<<20) {
		t.Errorf("memory.max after growth = %q, want %d", got, 400<<20)
	}
	if got, want := execIn(t, name, "cat", cg.swap), strconv.Itoa(cg.swapValue(400<<20, 600<<20)); got != want {
		t.Errorf("%s after growth = %q, want %s", cg.swap, got, want)
	}
	grown := before
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && grown < before+200*1024; time.Sleep(200 * time.Millisecond) {
		grown = memTotalKB(t, name)
	}
	if grown < before+200*1024 {
		t.Errorf("MemTotal %d kB -> %d kB after docker update --memory 200m -> 400m: the VM did not grow by 200 MiB", before, grown)
	}

	if res := docker(t, "", "update", "--memory", "300m", "--memory-swap", "300m", name); res.code != 0 {
		t.Fatalf("docker update --memory 300m (shrink): %s", res.stderr)
	}
	if got := execIn(t, name, "cat", cg.memory); got != strconv.Itoa(300<<20) {
		t.Errorf("memory.max after shrink = %q, want %d", got, 300<<20)
	}
	if after := memTotalKB(t, name); after < grown {
		t.Errorf("MemTotal shrank from %d kB to %d kB: RAM is never unplugged", grown, after)
	}
}

// TestKataCgroupFS: the container gets a cgroup v2 filesystem as runc gives it: read-only,
// namespaced (its own cgroup is "/"), with the spec's limits; writable with writable-cgroups.
func TestKataCgroupFS(t *testing.T) {
	requireKata(t)
	cg := hostCgroupLayout(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--memory", "100m", "--pids-limit", "20", "--cpus", "0.5", "busybox", "sh", "-c",
		"stat -f -c %t /sys/fs/cgroup; cat "+cg.memory+" "+cg.pids+" "+cg.cpu+"; mkdir "+cg.writableDir+"/x 2>&1; true")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	want := []string{cg.fsMagic, strconv.Itoa(100 << 20), "20", cg.cpuQuota("50000")}
	if len(lines) < len(want)+1 {
		t.Fatalf("output %q", res.stdout)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q (output %q)", i, lines[i], w, res.stdout)
		}
	}
	if !strings.Contains(lines[len(want)], "Read-only file system") {
		t.Errorf("mkdir in %s: %q, want a read-only file system", cg.writableDir, lines[len(want)])
	}
	if !cg.v1 {
		// A private cgroup namespace (Docker's default on cgroup v2) rooted at the container's cgroup.
		if got := strings.TrimSpace(docker(t, "", "run", "--rm", "--runtime=kata", "busybox", "cat", "/proc/self/cgroup").stdout); got != "0::/" {
			t.Errorf("/proc/self/cgroup = %q, want 0::/", got)
		}
	}

	res = docker(t, "", "run", "--rm", "--runtime=kata", "--security-opt", "writable-cgroups=true", "busybox", "sh", "-c",
		"mkdir "+cg.writableDir+"/x && ls "+cg.writableDir+"/x/cgroup.procs")
	if res.code != 0 || strings.TrimSpace(res.stdout) != cg.writableDir+"/x/cgroup.procs" {
		t.Errorf("writable cgroups: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
