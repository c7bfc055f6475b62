package accel

import (
	"fmt"
	"os"
)

// Host paths probed in production; tests pass fixtures to ProbeKVM and ParseCPUInfo instead.
const (
	hostCPUInfo = "/proc/cpuinfo"
	hostKVM     = "/dev/kvm"
	hostModules = "/proc/modules"
)

// ReadHostCPU parses this host's /proc/cpuinfo.
func ReadHostCPU() (CPU, error) {
	f, err := os.Open(hostCPUInfo)
	if err != nil {
		return CPU{}, fmt.Errorf("reading the CPU's flags: %w", err)
	}
	defer f.Close()
	return ParseCPUInfo(f)
}

// ProbeHost probes this host's /dev/kvm. An unreadable /proc/cpuinfo counts as a CPU without
// virtualization flags: the verdict then errs on the side of emulation, which always works.
func ProbeHost() KVM {
	cpu, _ := ReadHostCPU()
	return ProbeHostKVM(cpu)
}

// ProbeHostKVM probes this host's /dev/kvm for a CPU already read.
func ProbeHostKVM(cpu CPU) KVM { return ProbeKVM(hostKVM, hostModules, cpu) }

// HostAccelerator is the accelerator VMs get on this host now, and why.
func HostAccelerator() (name, reason string) { return Accelerator(ProbeHost()) }
