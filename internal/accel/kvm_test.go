package accel

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestJudgeKVM(t *testing.T) {
	intel := CPU{Vendor: "GenuineIntel", VMX: true}
	amd := CPU{Vendor: "AuthenticAMD", SVM: true}
	guest := CPU{Vendor: "AuthenticAMD", Hypervisor: true}
	bare := CPU{Vendor: "GenuineIntel"}
	working := func(cpu CPU) KVMFacts {
		return KVMFacts{DevPath: "/dev/kvm", Present: true, APIVersion: 12, CreatedVM: true, CPU: cpu}
	}
	tests := []struct {
		name       string
		facts      KVMFacts
		wantUsable bool
		wantReason []string // substrings
	}{
		{"intel with vmx", working(intel), true, []string{"API 12", "vmx"}},
		{"amd with svm", working(amd), true, []string{"svm"}},
		{"nested with vmx passed through", working(CPU{VMX: true, Hypervisor: true}), true, []string{"vmx"}},
		{"paravirtual KVM: guest without vmx/svm", working(guest), false,
			[]string{"no vmx/svm flag", "runs under a hypervisor", "paravirtual KVM", "hang"}},
		{"kvm_pvm loaded", func() KVMFacts { f := working(intel); f.PVMModule = true; return f }(), false,
			[]string{"kvm_pvm", "paravirtual"}},
		{"no vmx/svm on bare metal", working(bare), false, []string{"no vmx/svm flag", "not backed by hardware"}},
		{"device missing, vmx present", KVMFacts{CPU: intel}, false, []string{"/dev/kvm does not exist", "modprobe kvm_intel"}},
		{"device missing, svm present", KVMFacts{CPU: amd}, false, []string{"modprobe kvm_amd"}},
		{"device missing in a VM", KVMFacts{CPU: guest}, false, []string{"nested virtualization"}},
		{"device missing, no VT", KVMFacts{CPU: bare}, false, []string{"firmware"}},
		{"permission denied", KVMFacts{Present: true, CPU: intel,
			OpenErr: &fs.PathError{Op: "open", Path: "/dev/kvm", Err: syscall.EACCES}}, false,
			[]string{"cannot open /dev/kvm: permission denied", "kvm group"}},
		{"not a kvm device", KVMFacts{DevPath: "/dev/null", Present: true, APIErr: syscall.ENOTTY, CPU: intel}, false,
			[]string{"/dev/null does not answer KVM_GET_API_VERSION", "not a KVM device"}},
		{"odd API version", KVMFacts{Present: true, APIVersion: 11, CPU: intel}, false, []string{"API version 11, expected 12"}},
		{"VM creation refused", KVMFacts{Present: true, APIVersion: 12, CreateVMErr: syscall.EBUSY, CPU: intel}, false,
			[]string{"cannot create a VM", "device or resource busy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := JudgeKVM(tt.facts)
			if k.Usable != tt.wantUsable {
				t.Errorf("Usable = %v, want %v (reason %q)", k.Usable, tt.wantUsable, k.Reason)
			}
			for _, s := range tt.wantReason {
				if !strings.Contains(k.Reason, s) {
					t.Errorf("Reason %q does not contain %q", k.Reason, s)
				}
			}
			if k.DevicePresent != tt.facts.Present || k.CanCreateVM != tt.facts.CreatedVM ||
				k.PVMModule != tt.facts.PVMModule || k.APIVersion != tt.facts.APIVersion {
				t.Errorf("facts not carried over: %+v from %+v", k, tt.facts)
			}
		})
	}
}

func TestAccelerator(t *testing.T) {
	name, why := Accelerator(KVM{Usable: true, Reason: "fine"})
	if name != "kvm" || why != "fine" {
		t.Errorf("usable KVM: got %q, %q", name, why)
	}
	name, why = Accelerator(KVM{Reason: "/dev/kvm does not exist"})
	if name != "tcg" || !strings.Contains(why, "TCG") || !strings.HasSuffix(why, "/dev/kvm does not exist") {
		t.Errorf("unusable KVM: got %q, %q", name, why)
	}
}

func TestModuleLoaded(t *testing.T) {
	tests := []struct {
		file string
		want bool
	}{
		{"testdata/modules/with-kvm-pvm", true},
		{"testdata/modules/stock-kvm", false}, // kvm_pvmx and "kvm_pvm," in a dependency list do not count
		{"testdata/modules/does-not-exist", false},
	}
	for _, tt := range tests {
		if got := moduleLoaded(tt.file, "kvm_pvm"); got != tt.want {
			t.Errorf("moduleLoaded(%s) = %v, want %v", tt.file, got, tt.want)
		}
	}
}

func TestProbeKVMMissingDevice(t *testing.T) {
	k := ProbeKVM(filepath.Join(t.TempDir(), "kvm"), "/nonexistent", CPU{VMX: true})
	if k.DevicePresent || k.Usable || !strings.Contains(k.Reason, "does not exist") {
		t.Errorf("got %+v", k)
	}
}

// /dev/null opens read-write and rejects the KVM ioctl: the real ioctl path, no KVM needed.
func TestProbeKVMNotAKVMDevice(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		testreq.Skipf(t, "no /dev/null")
	}
	k := ProbeKVM("/dev/null", "/nonexistent", CPU{VMX: true})
	if !k.DevicePresent || k.Usable || k.APIVersion != 0 || !strings.Contains(k.Reason, "KVM_GET_API_VERSION") {
		t.Errorf("got %+v", k)
	}
}

// TestProbeKVMThisHost runs the real probe. The CI machines have a /dev/kvm that answers while the
// CPU shows no vmx/svm: the probe must call it unusable and say it is paravirtual.
func TestProbeKVMThisHost(t *testing.T) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		testreq.Skipf(t, "no /proc/cpuinfo")
	}
	cpu, err := ParseCPUInfo(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, statErr := os.Stat("/dev/kvm")
	k := ProbeKVM("/dev/kvm", "/proc/modules", cpu)
	t.Logf("cpu %+v -> %+v", cpu, k)
	if k.DevicePresent != (statErr == nil) {
		t.Fatalf("DevicePresent = %v, but stat says %v", k.DevicePresent, statErr)
	}
	if statErr != nil {
		testreq.Skipf(t, "no /dev/kvm: only the absent-device verdict was checked")
	}
	hw := cpu.VMX || cpu.SVM
	if k.Usable && !hw {
		t.Errorf("KVM called usable without vmx/svm: %+v", k)
	}
	if k.CanCreateVM && k.APIVersion != 12 {
		t.Errorf("VM created but API version %d", k.APIVersion)
	}
	if !hw && cpu.Hypervisor && k.CanCreateVM && !k.PVMModule {
		if !strings.Contains(k.Reason, "paravirtual") {
			t.Errorf("paravirtual KVM not named as such: %q", k.Reason)
		}
	}
	if !k.CanCreateVM {
		t.Logf("the probe stopped before KVM_CREATE_VM (%s): run the tests as root to cover it", k.Reason)
	}
}
