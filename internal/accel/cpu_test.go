package accel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCPUInfoFixtures(t *testing.T) {
	tests := []struct {
		file string
		want CPU
	}{
		{"intel-vmx", CPU{Vendor: "GenuineIntel", ModelName: "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", VMX: true}},
		{"amd-svm", CPU{Vendor: "AuthenticAMD", ModelName: "AMD Ryzen 7 5800X 8-Core Processor", SVM: true}},
		{"intel-vt-disabled", CPU{Vendor: "GenuineIntel", ModelName: "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"}},
		{"guest-hypervisor", CPU{Vendor: "AuthenticAMD", ModelName: "AMD EPYC", Hypervisor: true}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "cpuinfo", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseCPUInfo(f)
			if err != nil {
				t.Fatalf("ParseCPUInfo: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCPUInfoInline(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    CPU
		wantErr bool
	}{
		{"only the first processor counts",
			"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx\n\nprocessor\t: 1\nvendor_id\t: Other\nflags\t\t: svm hypervisor\n",
			CPU{Vendor: "GenuineIntel", VMX: true}, false},
		{"flag names match whole words",
			"processor\t: 0\nflags\t\t: svm_lock vmx_x hypervisorish\n", CPU{}, false},
		{"arm64 has no vendor_id or flags",
			"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\nCPU implementer\t: 0x41\n",
			CPU{}, false},
		{"empty input", "", CPU{}, true},
		{"not cpuinfo", "MemTotal: 100 kB\n", CPU{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCPUInfo(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
