package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits on sizes, chosen to catch typos (a memory size in bytes, a
// timeout in nanoseconds) rather than to police what a host can do.
const (
	maxVCPUs       = 256
	minMemoryMiB   = 64
	maxMemoryMiB   = 1 << 20 // 1 TiB
	maxOverheadMiB = 64 << 10
	minBootTimeout = time.Second
	maxBootTimeout = 10 * time.Minute
	// maxKernelParams keeps the whole guest command line (built-in
	// parameters included) under the x86 limit of 2048 bytes.
	maxKernelParams = 1024
	// maxStateDir leaves room below the kernel's 107-byte limit on unix
	// socket paths for the runtime's per-VM layout,
	// "<state_dir>/<64-character container id>/vm/agent.sock".
	maxStateDir = 28
	// The TCG translation buffer, in MiB (QEMU's default is 1024).
	minTranslationMiB = 8
	maxTranslationMiB = 2048
)

// MaxPool bounds the idle VMs a pool keeps ([factory] pool): each costs memory all the time.
const MaxPool = 16

// Validate checks every key and reports all problems at once; each message
// names the key and how to fix it.
func (c *Config) Validate() error {
	h, a, r := c.Hypervisor, c.Agent, c.Runtime
	errs := []error{
		checkFile("hypervisor.path", h.Path, true, true),
		checkFile("hypervisor.kernel", h.Kernel, true, false),
		checkFile("hypervisor.initrd", h.Initrd, true, false),
		checkFile("hypervisor.firmware", h.Firmware, false, false),
		checkMachine(h.MachineType),
		checkEnum("hypervisor.accelerator", h.Accelerator, AccelAuto, AccelKVM, AccelTCG),
		checkKernelParams(h.KernelParams),
		checkRange("hypervisor.default_vcpus", h.VCPUs, 1, maxVCPUs),
		checkRange("hypervisor.default_memory", h.MemoryMiB, minMemoryMiB, maxMemoryMiB),
		checkRange("hypervisor.memory_overhead", h.MemoryOverheadMiB, 0, maxOverheadMiB),
		checkTranslationBuffer(h.TCGTranslationMiB),
		checkEnum("hypervisor.shared_fs", h.SharedFS, SharedFS9P, SharedFSVirtiofs),
		checkVirtiofsDaemon(h),
		checkBootTimeout(a.BootTimeout.Duration()),
		checkStateDir(r.StateDir),
		checkPool(c.Factory),
	}
	return errors.Join(errs...)
}

// checkFile requires an absolute, clean path to an existing regular file
// (executable if exec is set). An empty value is fine unless required.
func checkFile(key, p string, required, exec bool) error {
	if p == "" {
		if required {
			return fmt.Errorf("%s is empty: set it to an absolute path", key)
		}
		return nil
	}
	if err := checkAbs(key, p); err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s = %q: %w: install the file or correct the path (`kata-deploy install` writes detected paths)", key, p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s = %q is not a regular file: point it at the file itself", key, p)
	}
	if exec && fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s = %q is not executable: chmod +x it or point at the right binary", key, p)
	}
	return nil
}

func checkAbs(key, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s = %q is relative: use an absolute path, the runtime does not run from a known directory", key, p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("%s = %q is not a clean path: write it as %q", key, p, filepath.Clean(p))
	}
	// QEMU and virtiofsd take several of these paths inside comma-separated
	// option strings, where a comma would start a new option.
	if strings.ContainsAny(p, ",\n") {
		return fmt.Errorf("%s = %q contains a comma or newline, which QEMU option strings cannot carry: rename or move the file", key, p)
	}
	return nil
}

func checkEnum(key, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s = %q is not supported: use one of %q", key, v, allowed)
}

func checkRange(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s = %d is out of range: use a value from %d to %d", key, v, lo, hi)
	}
	return nil
}

// checkMachine accepts the two x86 machine families the driver's PCI
// devices work on, plain or versioned (e.g. "pc-q35-7.2").
func checkMachine(m string) error {
	if m == MachineQ35 || m == MachinePC {
		return nil
	}
	for _, prefix := range []string{"pc-q35-", "pc-i440fx-"} {
		rest, ok := strings.CutPrefix(m, prefix)
		if ok && rest != "" && strings.Trim(rest, "0123456789.") == "" {
			return nil
		}
	}
	return fmt.Errorf("hypervisor.machine_type = %q is not supported: use \"q35\" (recommended) or \"pc\"", m)
}

func checkKernelParams(p string) error {
	if len(p) > maxKernelParams {
		return fmt.Errorf("hypervisor.kernel_params is %d bytes long: keep it under %d, the guest command line is limited", len(p), maxKernelParams)
	}
	if strings.ContainsAny(p, "\n\r\x00") {
		return errors.New("hypervisor.kernel_params contains a line break or NUL: write the parameters on one line, separated by spaces")
	}
	return nil
}

func checkVirtiofsDaemon(h Hypervisor) error {
	if h.SharedFS != SharedFSVirtiofs {
		if h.VirtiofsDaemon == "" {
			return nil
		}
		return checkAbs("hypervisor.virtio_fs_daemon", h.VirtiofsDaemon)
	}
	if h.VirtiofsDaemon == "" {
		return errors.New("hypervisor.virtio_fs_daemon is empty but shared_fs = \"virtio-fs\" needs it: set it (Debian: /usr/lib/qemu/virtiofsd) or use shared_fs = \"virtio-9p\"")
	}
	return checkFile("hypervisor.virtio_fs_daemon", h.VirtiofsDaemon, true, true)
}

func checkBootTimeout(d time.Duration) error {
	if d < minBootTimeout || d > maxBootTimeout {
		return fmt.Errorf("agent.boot_timeout = %s is out of range: write a quoted duration from %q to %q (a bare number counts nanoseconds)", d, minBootTimeout, maxBootTimeout)
	}
	return nil
}

func checkStateDir(d string) error {
	if d == "" {
		return fmt.Errorf("runtime.state_dir is empty: set it to an absolute directory such as %q", DefaultStateDir)
	}
	if err := checkAbs("runtime.state_dir", d); err != nil {
		return err
	}
	if d == "/" {
		return fmt.Errorf("runtime.state_dir = \"/\" would put VM state in the root directory: use a directory of its own such as %q", DefaultStateDir)
	}
	if len(d) > maxStateDir {
		return fmt.Errorf("runtime.state_dir = %q is longer than %d bytes: unix socket paths below it would exceed the kernel's 108-byte limit; use a shorter directory such as %q", d, maxStateDir, DefaultStateDir)
	}
	return nil
}

// checkPool accepts a pool of 0 to MaxPool clones, and one only with templating on: the pool
// holds clones of the template.
func checkPool(f Factory) error {
	if err := checkRange("factory.pool", f.Pool, 0, MaxPool); err != nil {
		return err
	}
	if f.Pool > 0 && !f.Template {
		return fmt.Errorf("factory.pool = %d needs factory.template = true: the pool holds clones of the template", f.Pool)
	}
	return nil
}

// checkTranslationBuffer accepts 0 (QEMU's default) or a size QEMU takes: below a few MiB it
// would flush all the time.
func checkTranslationBuffer(mib int) error {
	if mib == 0 {
		return nil
	}
	return checkRange("hypervisor.tcg_translation_buffer", mib, minTranslationMiB, maxTranslationMiB)
}
