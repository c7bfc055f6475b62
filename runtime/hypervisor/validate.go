package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Bounds on what Start accepts.
const (
	maxIDLen     = 128
	maxTagLen    = 31 // QEMU 9p mount tags; virtio-fs allows 36
	maxVCPUs     = 256
	minMemoryMiB = 64
	maxMemoryMiB = 1 << 20
	// maxCmdline is the x86 kernel's COMMAND_LINE_SIZE minus the NUL.
	maxCmdline = 2047
)

var (
	// idPattern is containerd's identifier grammar (letters, digits and
	// single separators), which also keeps QEMU's option parser happy.
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)
	tagPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// validate checks a Config before anything is created; every message names
// the field and the fix.
func (c *Config) validate() error {
	errs := []error{
		validateID(c.ID),
		requireFile("QEMU binary (QEMUPath)", c.QEMUPath),
		requireFile("guest kernel (Kernel)", c.Kernel),
		requireFile("guest initrd (Initrd)", c.Initrd),
		optionalFile("firmware (Firmware)", c.Firmware),
		validateAccel(c.Accelerator),
		validateRange("VCPUs", c.VCPUs, 1, maxVCPUs),
		validateRange("MemoryMiB", c.MemoryMiB, minMemoryMiB, maxMemoryMiB),
		validateStateDir(c.StateDir, c.Shares),
		validateNetNS(c.NetNSPath),
		validateParams(c.KernelParams),
		validateRange("Nice", c.Nice, 0, 19),
	}
	if c.MachineType == "" || strings.ContainsAny(c.MachineType, ", ") {
		errs = append(errs, fmt.Errorf("machine type %q is invalid: use \"q35\"", c.MachineType))
	}
	if c.memory != nil {
		errs = append(errs, optionString("template memory file", c.memory.path))
	}
	errs = append(errs, validateShares(c.Shares, c.VirtiofsDaemon)...)
	errs = append(errs, validateBlocks(c.Blocks)...)
	return errors.Join(errs...)
}

func validateID(id string) error {
	if len(id) == 0 || len(id) > maxIDLen || !idPattern.MatchString(id) {
		return fmt.Errorf("VM id %q is invalid: use 1 to %d letters, digits and single '.', '_' or '-' separators", id, maxIDLen)
	}
	return nil
}

// optionString rejects what would break a comma-separated QEMU option
// string or a path the guest sees.
func optionString(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q must be an absolute, clean path", what, p)
	}
	if strings.ContainsAny(p, ",\n\x00") {
		return fmt.Errorf("%s %q contains a comma or newline, which QEMU option strings cannot carry: use another path", what, p)
	}
	return nil
}

func requireFile(what, p string) error {
	if p == "" {
		return fmt.Errorf("%s is not set", what)
	}
	return optionalFile(what, p)
}

func optionalFile(what, p string) error {
	if p == "" {
		return nil
	}
	if err := optionString(what, p); err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s: %w: install it or fix the runtime configuration", what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %q is not a regular file", what, p)
	}
	return nil
}

func validateAccel(a string) error {
	if a != AccelKVM && a != AccelTCG {
		return fmt.Errorf("accelerator %q is not resolved: pass %q or %q (resolve \"auto\" before calling Start)", a, AccelKVM, AccelTCG)
	}
	return nil
}

func validateRange(what string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s = %d is out of range %d..%d", what, v, lo, hi)
	}
	return nil
}

func validateStateDir(dir string, shares []Share) error {
	if err := optionString("state directory (StateDir)", dir); err != nil {
		return err
	}
	if dir == "/" || filepath.Dir(dir) == "/" {
		return fmt.Errorf("state directory %q is too close to the root: use a per-VM directory such as /run/kata-deploy/<id>", dir)
	}
	for _, s := range newLayout(dir).sockets(shares) {
		if len(s) > maxSocketPath {
			return fmt.Errorf("socket path %q is %d bytes, over the kernel's %d-byte limit for unix sockets: use a shorter state directory", s, len(s), maxSocketPath)
		}
	}
	return nil
}

func validateNetNS(p string) error {
	if p == "" {
		return nil
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("network namespace path %q must be absolute (e.g. /proc/<pid>/ns/net or /run/netns/<name>)", p)
	}
	return nil
}

// validateParams accepts one or several space-separated parameters per
// element; a line break or NUL would end the command line early.
func validateParams(params []string) error {
	for _, p := range params {
		if strings.ContainsAny(p, "\n\r\x00") {
			return fmt.Errorf("kernel parameters %q contain a line break or NUL: write them on one line", p)
		}
	}
	return nil
}

func validateShares(shares []Share, daemon string) []error {
	var errs []error
	tags := map[string]bool{}
	virtiofs := false
	for i, s := range shares {
		what := fmt.Sprintf("share %d (tag %q)", i, s.Tag)
		if len(s.Tag) == 0 || len(s.Tag) > maxTagLen || !tagPattern.MatchString(s.Tag) {
			errs = append(errs, fmt.Errorf("%s: the tag must be 1 to %d letters, digits, '.', '_' or '-'", what, maxTagLen))
		}
		if tags[s.Tag] {
			errs = append(errs, fmt.Errorf("%s: the tag is used twice: give each share its own tag", what))
		}
		tags[s.Tag] = true
		switch s.Type {
		case Share9P:
		case ShareVirtiofs:
			virtiofs = true
		default:
			errs = append(errs, fmt.Errorf("%s: type %q is not supported: use %q or %q", what, s.Type, Share9P, ShareVirtiofs))
		}
		errs = append(errs, validateShareDir(what, s.HostPath))
	}
	if virtiofs {
		errs = append(errs, requireFile("virtiofsd (VirtiofsDaemon)", daemon))
	}
	return errs
}

func validateShareDir(what, p string) error {
	if err := optionString(what+" host path", p); err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %q is not a directory: shares export directories", what, p)
	}
	return nil
}
