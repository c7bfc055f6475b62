package accel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CPU is what /proc/cpuinfo says about the first processor.
type CPU struct {
	Vendor    string // "GenuineIntel", "AuthenticAMD", ...; empty on CPUs without vendor_id (arm64)
	ModelName string
	// VMX (Intel VT-x) and SVM (AMD-V) mean hardware virtualization is available to this kernel.
	VMX, SVM bool
	// Hypervisor means this kernel itself runs in a virtual machine.
	Hypervisor bool
}

// ParseCPUInfo reads /proc/cpuinfo content. Only the first processor is looked at: flags that
// matter here are the same on every CPU of a machine.
func ParseCPUInfo(r io.Reader) (CPU, error) {
	var c CPU
	processors := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024) // flag lines are long
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "processor":
			processors++
			if processors > 1 {
				return c, nil
			}
		case "vendor_id":
			c.Vendor = value
		case "model name":
			c.ModelName = value
		case "flags":
			for _, f := range strings.Fields(value) {
				switch f {
				case "vmx":
					c.VMX = true
				case "svm":
					c.SVM = true
				case "hypervisor":
					c.Hypervisor = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("reading cpuinfo: %w", err)
	}
	if processors == 0 {
		return c, errors.New("cpuinfo lists no processor: is this /proc/cpuinfo?")
	}
	return c, nil
}
