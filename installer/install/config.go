package install

import (
	"fmt"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// configSettings are what the user chooses of the runtime configuration.
type configSettings struct {
	Accelerator string // "" is what works here
	StateDir    string // "" is config.DefaultStateDir
	Template    bool   // [factory] template
	Pool        int    // [factory] pool
}

// runtimeConfig is configuration-qemu.toml for this host: the QEMU found by the preflight, its
// fast-boot firmware when present, the accelerator that really works here (or the one asked
// for), the guest image under the prefix, and the settings chosen.
func runtimeConfig(h Host, l layout.Layout, s configSettings) ([]byte, error) {
	accel := s.Accelerator
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
	if s.StateDir != "" {
		c.Runtime.StateDir = s.StateDir
	}
	c.Factory.Template, c.Factory.Pool = s.Template, s.Pool
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

// configSettings are the settings of the version this run installs: the install's choices, the
// version in use's template and pool settings unless --template or --pool say otherwise. A pool
// needs templating: --pool N without it is refused, and --template=false also turns off the pool
// the version in use has.
func (x *installer) configSettings(m *manifest.Manifest) (configSettings, error) {
	s := configSettings{Accelerator: x.o.Accelerator, StateDir: x.d.StateDir}
	v := versionOf(m, currentID(m))
	switch {
	case x.o.Template != nil:
		s.Template = *x.o.Template
	case v != nil && v.Factory != nil:
		s.Template = v.Factory.Template
	}
	switch {
	case x.o.Pool != nil:
		s.Pool = *x.o.Pool
	case v != nil && v.Factory != nil:
		s.Pool = v.Factory.Pool
	}
	if s.Pool > 0 && !s.Template {
		if x.o.Pool == nil {
			s.Pool = 0 // the version in use's pool goes with its templating
		} else {
			off := "VM templating is off"
			if v != nil {
				off += " in the version in use"
			}
			return s, fmt.Errorf("--pool %d needs VM templating (the pool holds clones of the template), and %s: add --template", s.Pool, off)
		}
	}
	return s, nil
}

// currentID is the version in use ("" without an install, or in the flat layout).
func currentID(m *manifest.Manifest) string {
	if m == nil || !m.Versioned() {
		return ""
	}
	return m.Current
}

// factoryRecord is what the manifest records of the settings' [factory] (nil: the defaults).
func (s configSettings) factoryRecord() *manifest.Factory {
	if !s.Template {
		return nil
	}
	return &manifest.Factory{Template: true, Pool: s.Pool}
}

// stateDir is the runtime's state directory the settings write.
func (s configSettings) stateDir() string {
	if s.StateDir != "" {
		return s.StateDir
	}
	return config.DefaultStateDir
}
