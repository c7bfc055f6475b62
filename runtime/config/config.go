// Package config reads, checks and writes the runtime's TOML configuration
// (configuration-qemu.toml): which QEMU, guest kernel and initrd to use, how
// big a VM is, how the container's rootfs is shared, and where the runtime
// keeps its state.
//
// Decoding is strict: a misspelt key is an error that names the key and its
// line, because a silently ignored setting is worse than a refused one.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Enumerated values.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"

	SharedFS9P       = "virtio-9p"
	SharedFSVirtiofs = "virtio-fs"

	MachineQ35 = "q35"
	MachinePC  = "pc"
)

// Config is the whole configuration file.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Agent      Agent      `toml:"agent"`
	Runtime    Runtime    `toml:"runtime"`
	Factory    Factory    `toml:"factory"`
}

// Hypervisor configures QEMU and the guest it boots.
type Hypervisor struct {
	Path              string `toml:"path"`
	Kernel            string `toml:"kernel"`
	Initrd            string `toml:"initrd"`
	Firmware          string `toml:"firmware"`
	MachineType       string `toml:"machine_type"`
	Accelerator       string `toml:"accelerator"`
	KernelParams      string `toml:"kernel_params"`
	VCPUs             int    `toml:"default_vcpus"`
	MemoryMiB         int    `toml:"default_memory"`
	SharedFS          string `toml:"shared_fs"`
	VirtiofsDaemon    string `toml:"virtio_fs_daemon"`
	MemoryOverheadMiB int    `toml:"memory_overhead"`
	// TCGTranslationMiB bounds the translation buffer of templated VMs under emulation (QEMU's
	// -accel tcg,tb-size); 0 keeps QEMU's default.
	TCGTranslationMiB int `toml:"tcg_translation_buffer"`
}

// Agent configures the runtime's side of the guest agent connection.
type Agent struct {
	Debug       bool     `toml:"debug"`
	BootTimeout Duration `toml:"boot_timeout"`
}

// Runtime configures the shim itself.
type Runtime struct {
	StateDir string `toml:"state_dir"`
	Debug    bool   `toml:"debug"`
}

// Factory configures how VMs are made other than by a cold boot.
type Factory struct {
	// Template starts each VM as a clone of a template VM booted once (runtime/sandbox/factory.go).
	Template bool `toml:"template"`
	// Pool keeps this many clones of the template restored and running, ready to be handed to
	// the next containers (runtime/sandbox/pool.go). 0: none. Needs Template.
	Pool int `toml:"pool"`
}

// Duration is a time.Duration written in TOML as a Go duration string
// ("30s", "1m30s"), which reads better than a bare number of nanoseconds.
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it like \"30s\" or \"1m30s\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// Default paths and sizes. The installer overwrites the paths with what it
// detects and installs on the host; the guest image defaults are those of the
// default install, through its current version.
const (
	DefaultQEMUPath       = "/usr/bin/qemu-system-x86_64"
	DefaultKernel         = layout.DefaultVmlinux
	DefaultInitrd         = layout.DefaultInitrd
	DefaultFirmware       = "/usr/share/qemu/qboot.rom"
	DefaultVirtiofsDaemon = "/usr/lib/qemu/virtiofsd"
	DefaultStateDir       = "/run/kata-deploy"
	DefaultVCPUs          = 1
	DefaultMemoryMiB      = 512
	DefaultOverheadMiB    = 128
	DefaultBootTimeout    = 30 * time.Second
)

// Default returns the configuration used for every key the file omits.
func Default() *Config {
	return &Config{
		Hypervisor: Hypervisor{
			Path:              DefaultQEMUPath,
			Kernel:            DefaultKernel,
			Initrd:            DefaultInitrd,
			Firmware:          DefaultFirmware,
			MachineType:       MachineQ35,
			Accelerator:       AccelAuto,
			VCPUs:             DefaultVCPUs,
			MemoryMiB:         DefaultMemoryMiB,
			SharedFS:          SharedFS9P,
			VirtiofsDaemon:    DefaultVirtiofsDaemon,
			MemoryOverheadMiB: DefaultOverheadMiB,
		},
		Agent:   Agent{BootTimeout: Duration(DefaultBootTimeout)},
		Runtime: Runtime{StateDir: DefaultStateDir},
	}
}

// Load reads, decodes and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read runtime configuration: %w (pass ConfigPath in the runtime options or run `kata-deploy install`)", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a configuration document.
func Parse(data []byte) (*Config, error) {
	c, err := Decode(data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode reads a configuration document over Default() without validating
// it: keys the document omits keep their default. Unknown keys are errors.
func Decode(data []byte) (*Config, error) {
	c := Default()
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, describeDecodeError(err)
	}
	return c, nil
}

// describeDecodeError turns go-toml's errors into messages that name the
// offending key and line, and say what to do.
func describeDecodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		msgs := make([]string, 0, len(strict.Errors))
		for i := range strict.Errors {
			e := &strict.Errors[i]
			line, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q: remove it or fix its spelling (see configuration-qemu.toml for the known keys)",
				line, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		where := fmt.Sprintf("line %d column %d", line, col)
		if k := de.Key(); len(k) > 0 {
			where += fmt.Sprintf(" (key %q)", strings.Join(k, "."))
		}
		return fmt.Errorf("%s: %s", where, de.Error())
	}
	return fmt.Errorf("invalid TOML: %w", err)
}

// KernelParamList splits kernel_params into single parameters.
func (h Hypervisor) KernelParamList() []string {
	return strings.Fields(h.KernelParams)
}
