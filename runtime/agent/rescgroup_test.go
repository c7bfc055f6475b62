package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestCgroupV2Writes(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	for _, tc := range []struct {
		name string
		res  *specs.LinuxResources
		want []string // file=line, in order
	}{
		{"none", nil, nil},
		{"empty", &specs.LinuxResources{}, nil},
		{"cpu quota and period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(15000), Period: u64(100000)}}, []string{"cpu.max=15000 100000"}},
		{"quota without period", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(20000)}}, []string{"cpu.max=20000 100000"}},
		{"unset quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}, []string{"cpu.max=max 100000"}},
		{"shares", &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024)}}, []string{"cpu.weight=39"}},
		{"cpuset", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1", Mems: "0"}}, []string{"cpuset.cpus=0-1", "cpuset.mems=0"}},
		{"memory and swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(314572800), Swap: i64(524288000)}},
			[]string{"memory.max=314572800", "memory.swap.max=209715200"}},
		{"unlimited swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30), Swap: i64(-1)}}, []string{"memory.max=1073741824", "memory.swap.max=max"}},
		{"memory reservation", &specs.LinuxResources{Memory: &specs.LinuxMemory{Reservation: i64(1 << 20)}}, []string{"memory.low=1048576"}},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(32)}}, []string{"pids.max=32"}},
		{"pids unset", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(0)}}, []string{"pids.max=max"}},
		{"io weight, throttles left to the host", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(500),
			ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 5 << 20}}}}, []string{"io.weight=default 4950"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, w := range cgroupV2Writes(tc.res) {
				got = append(got, w.file+"="+w.line)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("writes %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCgroupV2WritesOptional(t *testing.T) {
	shares := uint64(512)
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares, Cpus: "3"}}
	for _, w := range cgroupV2Writes(res) {
		if want := w.file == "cpuset.cpus"; w.optional != want {
			t.Errorf("%s: optional %v, want %v (the guest's vCPUs are not the host's CPUs)", w.file, w.optional, want)
		}
	}
}

func TestCgroupV1Writes(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name string
		res  *specs.LinuxResources
		want []string // hierarchy:file=line
	}{
		{"quota alone", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(15000)}}, []string{"cpu,cpuacct:cpu.cfs_quota_us=15000"}},
		{"unset quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1)}}, []string{"cpu,cpuacct:cpu.cfs_quota_us=-1"}},
		{"period then quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000), Shares: u64(512)}},
			[]string{"cpu,cpuacct:cpu.shares=512", "cpu,cpuacct:cpu.cfs_period_us=100000", "cpu,cpuacct:cpu.cfs_quota_us=50000"}},
		{"memory and memory+swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(314572800), Swap: i64(524288000)}},
			[]string{"memory:memory.limit_in_bytes=314572800", "memory:memory.memsw.limit_in_bytes=524288000"}},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}}, []string{"pids:pids.max=max"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, w := range cgroupV1Writes(tc.res) {
				got = append(got, w.hierarchy+":"+w.file+"="+w.line)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("writes %q, want %q", got, tc.want)
			}
		})
	}
}

// Raising the memory limit above memory+swap is refused by cgroup v1: applyWrites then writes
// memory+swap first.
func TestApplyWritesSwapsARefusedPair(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a directory tree standing in for a cgroup")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	// memory.limit_in_bytes is missing, so its write fails as a refused one would.
	if err := os.WriteFile(filepath.Join(dir, "c", "memory.memsw.limit_in_bytes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	d := &cgroupDir{fd: fd}
	ws := []cgroupWrite{
		{hierarchy: "memory", file: "memory.limit_in_bytes", line: "1", swapWithNext: true},
		{hierarchy: "memory", file: "memory.memsw.limit_in_bytes", line: "2"},
	}
	// The limit fails, memsw is written, the limit fails again: the error is reported.
	if _, err := applyWrites("c", ws, func(string) *cgroupDir { return d }); err == nil {
		t.Fatal("no error for a write that failed twice")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "c", "memory.memsw.limit_in_bytes")); string(b) != "2" {
		t.Errorf("memory+swap = %q: not written first after the refused limit", b)
	}
}
