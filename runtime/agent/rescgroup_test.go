package agent

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
