package sandbox

import (
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/config"
)

const mib = 1 << 20

// vmSize derives the VM's memory and vCPUs from the container's limits: the VM is the resource
// boundary, so `--memory` becomes guest RAM (plus the configured overhead for the guest kernel and
// agent) and `--cpus`/`--cpuset-cpus` the vCPU count. Without limits the configured defaults apply.
func vmSize(h config.Hypervisor, spec *specs.Spec, hostCPUs int) (memoryMiB, vcpus int) {
	memoryMiB, vcpus = h.MemoryMiB, h.VCPUs
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return memoryMiB, vcpus
	}
	r := spec.Linux.Resources
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		memoryMiB = int((*r.Memory.Limit+mib-1)/mib) + h.MemoryOverheadMiB
	}
	if r.CPU != nil {
		quota, set := cpusFromQuota(r.CPU), countCPUSet(r.CPU.Cpus)
		switch {
		case quota > 0 && set > 0:
			vcpus = min(quota, set)
		case quota > 0:
			vcpus = quota
		case set > 0:
			vcpus = set
		}
	}
	if hostCPUs > 0 && vcpus > hostCPUs {
		vcpus = hostCPUs
	}
	return memoryMiB, max(vcpus, 1)
}

// cpusFromQuota turns --cpus (a CFS quota over a period) into whole vCPUs, rounding up.
func cpusFromQuota(cpu *specs.LinuxCPU) int {
	if cpu.Quota == nil || *cpu.Quota <= 0 || cpu.Period == nil || *cpu.Period == 0 {
		return 0
	}
	q, p := uint64(*cpu.Quota), *cpu.Period
	return int((q + p - 1) / p)
}

// countCPUSet counts the CPUs of a cpuset list such as "0-2,4" (0 if empty or malformed).
func countCPUSet(set string) int {
	if strings.TrimSpace(set) == "" {
		return 0
	}
	n := 0
	for _, part := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}

// hostCPUs is how many CPUs the host can give a VM.
func hostCPUs() int { return runtime.NumCPU() }
