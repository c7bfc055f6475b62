package accel

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// KVM ioctls from <linux/kvm.h>: _IO(KVMIO=0xAE, nr). x/sys/unix does not define them.
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	// kvmAPIVersion is the only API version Linux has reported since 2.6.22.
	kvmAPIVersion = 12
)

// KVM says whether hardware-accelerated VMs can run here, and why not.
type KVM struct {
	DevicePresent bool
	APIVersion    int  // from KVM_GET_API_VERSION; 0 when not asked or it failed
	CanCreateVM   bool // KVM_CREATE_VM succeeded
	PVMModule     bool // the kvm_pvm (paravirtual KVM) module is loaded
	Usable        bool
	Reason        string // one sentence for the user, for both outcomes
}

// KVMFacts is what ProbeKVM observed; JudgeKVM turns it into a verdict without touching the host.
type KVMFacts struct {
	DevPath     string
	Present     bool  // the device node exists
	OpenErr     error // opening it read-write failed
	APIVersion  int
	APIErr      error // KVM_GET_API_VERSION failed
	CreatedVM   bool  // KVM_CREATE_VM succeeded
	CreateVMErr error
	PVMModule   bool
	CPU         CPU
}

// ProbeKVM opens devPath (normally /dev/kvm), asks its API version, creates and closes a VM, and
// reads procModulesPath (normally /proc/modules) for kvm_pvm. A device node alone proves nothing:
// nested and paravirtual KVMs answer the ioctls and still hang a stock guest kernel.
func ProbeKVM(devPath, procModulesPath string, cpu CPU) KVM {
	f := KVMFacts{DevPath: devPath, CPU: cpu, PVMModule: moduleLoaded(procModulesPath, "kvm_pvm")}
	if _, err := os.Stat(devPath); err != nil {
		return JudgeKVM(f)
	}
	f.Present = true
	dev, err := os.OpenFile(devPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		f.OpenErr = err
		return JudgeKVM(f)
	}
	defer dev.Close()
	fd := dev.Fd()
	version, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, kvmGetAPIVersion, 0)
	if errno != 0 {
		f.APIErr = errno
		return JudgeKVM(f)
	}
	f.APIVersion = int(version)
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, kvmCreateVM, 0)
	if errno != 0 {
		f.CreateVMErr = errno
		return JudgeKVM(f)
	}
	f.CreatedVM = true
	unix.Close(int(vm))
	return JudgeKVM(f)
}

// JudgeKVM decides whether KVM is usable from the facts, checking the cheapest explanation first.
func JudgeKVM(f KVMFacts) KVM {
	k := KVM{
		DevicePresent: f.Present,
		APIVersion:    f.APIVersion,
		CanCreateVM:   f.CreatedVM,
		PVMModule:     f.PVMModule,
	}
	dev := f.DevPath
	if dev == "" {
		dev = "/dev/kvm"
	}
	hw := f.CPU.VMX || f.CPU.SVM
	switch {
	case !f.Present:
		k.Reason = dev + " does not exist: " + missingDeviceHint(f.CPU)
	case f.OpenErr != nil:
		k.Reason = fmt.Sprintf("cannot open %s: %v", dev, unwrapPathError(f.OpenErr))
		if errors.Is(f.OpenErr, fs.ErrPermission) {
			k.Reason += " (run as root or add the user to the kvm group)"
		}
	case f.APIErr != nil:
		k.Reason = fmt.Sprintf("%s does not answer KVM_GET_API_VERSION (%v): it is not a KVM device", dev, f.APIErr)
	case f.APIVersion != kvmAPIVersion:
		k.Reason = fmt.Sprintf("%s reports KVM API version %d, expected %d", dev, f.APIVersion, kvmAPIVersion)
	case f.CreateVMErr != nil:
		k.Reason = fmt.Sprintf("%s cannot create a VM (KVM_CREATE_VM: %v): another hypervisor such as VirtualBox may hold the CPU's virtualization extensions", dev, f.CreateVMErr)
	case f.PVMModule:
		k.Reason = dev + " answers but the kvm_pvm module is loaded: this is a paravirtual KVM (PVM) on which stock guest kernels hang"
	case !hw && f.CPU.Hypervisor:
		k.Reason = dev + " answers but the CPU has no vmx/svm flag and runs under a hypervisor: this is a paravirtual KVM on which stock guest kernels hang"
	case !hw:
		k.Reason = dev + " answers but the CPU shows no vmx/svm flag: KVM here is not backed by hardware virtualization and stock guest kernels hang on it"
	default:
		k.Usable = true
		k.Reason = fmt.Sprintf("%s answers (API %d, VM creation works) and the CPU has %s", dev, f.APIVersion, hwFlag(f.CPU))
	}
	return k
}

func missingDeviceHint(c CPU) string {
	switch {
	case c.VMX:
		return "the CPU has VT-x but the kvm_intel module is not loaded (modprobe kvm_intel)"
	case c.SVM:
		return "the CPU has AMD-V but the kvm_amd module is not loaded (modprobe kvm_amd)"
	case c.Hypervisor:
		return "this machine is itself a VM without nested virtualization (enable it on the VM's host)"
	default:
		return "the CPU shows no vmx/svm flag (enable VT-x or AMD-V in the firmware settings)"
	}
}

func hwFlag(c CPU) string {
	if c.VMX {
		return "vmx"
	}
	return "svm"
}

// unwrapPathError drops the "open /dev/kvm:" prefix that the reason already says.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Accelerator names the QEMU accelerator the runtime will use, and why.
func Accelerator(k KVM) (name, reason string) {
	if k.Usable {
		return "kvm", k.Reason
	}
	return "tcg", "emulation (TCG), about 10x slower than KVM, because " + k.Reason
}

// moduleLoaded reports whether a /proc/modules-format file lists the module. A missing file (a
// kernel without loadable modules) means no module is loaded.
func moduleLoaded(procModulesPath, module string) bool {
	f, err := os.Open(procModulesPath)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, _ := strings.Cut(sc.Text(), " "); name == module {
			return true
		}
	}
	return false
}
