package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/config"
)

func TestVMSize(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	h := config.Hypervisor{MemoryMiB: 512, VCPUs: 1, MemoryOverheadMiB: 128}
	tests := []struct {
		name      string
		res       *specs.LinuxResources
		hostCPUs  int
		wantMem   int
		wantVCPUs int
	}{
		{"no limits: defaults", nil, 8, 512, 1},
		{"--memory 256m adds the overhead", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 * mib)}}, 8, 384, 1},
		{"--memory rounds up to MiB", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100*mib + 1)}}, 8, 229, 1},
		{"--cpus 2", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000)}}, 8, 512, 2},
		{"--cpus 1.5 rounds up", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}, 8, 512, 2},
		{"--cpuset-cpus 0-2,5", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,5"}}, 8, 512, 4},
		{"--cpus 4 --cpuset-cpus 0-1: the smaller", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(400000), Period: u64(100000), Cpus: "0-1"}}, 8, 512, 2},
		{"--cpus 1 --cpuset-cpus 0-3: the smaller", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(100000), Period: u64(100000), Cpus: "0-3"}}, 8, 512, 1},
		{"capped at the host's CPUs", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(800000), Period: u64(100000)}}, 2, 512, 2},
		{"malformed cpuset ignored", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}, 8, 512, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem, vcpus := vmSize(h, &specs.Spec{Linux: &specs.Linux{Resources: tt.res}}, tt.hostCPUs)
			if mem != tt.wantMem || vcpus != tt.wantVCPUs {
				t.Errorf("vmSize = %d MiB, %d vCPUs; want %d, %d", mem, vcpus, tt.wantMem, tt.wantVCPUs)
			}
		})
	}
}
