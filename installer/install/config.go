package install

import (
	"fmt"

	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// runtimeConfig is configuration-qemu.toml for this host: the QEMU found by the preflight, its
// fast-boot firmware when present, the accelerator that really works here (or the one asked
// for), and the guest image under the prefix.
func runtimeConfig(h Host, l layout.Layout, accel string) ([]byte, error) {
	c := config.Default()
	c.Hypervisor.Path = h.QEMU.Path
	c.Hypervisor.Kernel = l.Vmlinux()
	c.Hypervisor.Initrd = l.Initrd()
	c.Hypervisor.Firmware = h.QEMU.QbootPath // "" is QEMU's default firmware
	if h.QEMU.VirtiofsdPath != "" {
		c.Hypervisor.VirtiofsDaemon = h.QEMU.VirtiofsdPath
	}
	c.Hypervisor.Accelerator = accel
	if accel == "" {
		c.Hypervisor.Accelerator = h.Report.Accelerator
	}
	if c.Hypervisor.Accelerator == "" {
		c.Hypervisor.Accelerator = config.AccelAuto
	}
	data, err := config.Encode(c)
	if err != nil {
		return nil, fmt.Errorf("writing the runtime configuration: %w", err)
	}
	return data, nil
}

// checkRuntimeConfig parses the configuration back with the runtime's own rules, once the files
// it names exist: the shim must never meet a configuration it refuses.
func checkRuntimeConfig(data []byte, path string) error {
	if _, err := config.Parse(data); err != nil {
		return fmt.Errorf("the generated %s does not pass the runtime's checks: %w", path, err)
	}
	return nil
}
