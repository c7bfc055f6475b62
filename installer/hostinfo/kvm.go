package hostinfo

import (
	"io"

	"github.com/kata-deploy/kata-deploy/internal/accel"
)

// The CPU and KVM verdict is shared with the runtime and lives in internal/accel; these names keep
// the installer's API.
type (
	// CPU is what /proc/cpuinfo says about the first processor.
	CPU = accel.CPU
	// KVM says whether hardware-accelerated VMs can run here, and why not.
	KVM = accel.KVM
	// KVMFacts is what ProbeKVM observed.
	KVMFacts = accel.KVMFacts
)

// ParseCPUInfo reads /proc/cpuinfo content.
func ParseCPUInfo(r io.Reader) (CPU, error) { return accel.ParseCPUInfo(r) }

// ProbeKVM asks devPath whether it runs hardware-backed VMs; see accel.ProbeKVM.
func ProbeKVM(devPath, procModulesPath string, cpu CPU) KVM {
	return accel.ProbeKVM(devPath, procModulesPath, cpu)
}

// JudgeKVM decides whether KVM is usable from the facts.
func JudgeKVM(f KVMFacts) KVM { return accel.JudgeKVM(f) }

// Accelerator names the QEMU accelerator the runtime will use, and why.
func Accelerator(k KVM) (name, reason string) { return accel.Accelerator(k) }
