package hostinfo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/qemusandbox"
)

// QEMU is the hypervisor found on the host and the helpers that make it fast.
type QEMU struct {
	Path    string
	Version string // e.g. "7.2.19"
	// QbootPath is the qboot firmware, which boots a PVH kernel much faster than SeaBIOS.
	QbootPath string
	// VirtiofsdPath is the virtio-fs daemon; without it the rootfs is shared over 9p.
	VirtiofsdPath string
	// Sandbox is the seccomp sandbox (-sandbox) this QEMU applies, probed as the runtime
	// probes it.
	Sandbox qemusandbox.Support
	// Virtiofsd is how virtiofsd sandboxes itself (when VirtiofsdPath is set).
	Virtiofsd qemusandbox.Virtiofsd
}

const qemuBinary = "qemu-system-x86_64"

// Where distributions ship qboot and virtiofsd (Debian/Ubuntu, Fedora, RHEL-family packages).
var (
	qbootCandidates     = []string{"/usr/share/qemu/qboot.rom", "/usr/share/qboot/bios.bin", "/usr/share/qemu-kvm/qboot.rom"}
	virtiofsdCandidates = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd"}
)

// qemuVersionTimeout bounds `qemu --version`, which only prints and exits.
const qemuVersionTimeout = 10 * time.Second

// DefaultQEMUSearchPaths is PATH followed by the places packages install QEMU.
// /usr/libexec/qemu-kvm is RHEL's QEMU binary itself, not a directory.
func DefaultQEMUSearchPaths() []string {
	paths := filepath.SplitList(os.Getenv("PATH"))
	return append(paths, "/usr/bin", "/usr/libexec/qemu-kvm", "/usr/local/bin", "/opt/kata/bin")
}

// FindQEMU looks for qemu-system-x86_64 in searchPaths (nil means DefaultQEMUSearchPaths). An
// entry that is a directory is searched for qemu-system-x86_64; an entry that is an executable
// file is taken as QEMU itself. The version comes from running `--version`. When QEMU is found but
// does not run, the returned QEMU still carries its Path.
func FindQEMU(searchPaths []string) (QEMU, error) {
	if searchPaths == nil {
		searchPaths = DefaultQEMUSearchPaths()
	}
	return findQEMU(searchPaths, qbootCandidates, virtiofsdCandidates)
}

func findQEMU(searchPaths, qboots, virtiofsds []string) (QEMU, error) {
	q := QEMU{
		QbootPath:     firstFile(qboots, false),
		VirtiofsdPath: firstFile(virtiofsds, true),
	}
	q.Path = locateQEMU(searchPaths)
	if q.Path == "" {
		return q, fmt.Errorf("%s not found in %s: install QEMU (qemu-system-x86 on Debian/Ubuntu, qemu-kvm on Fedora/RHEL)",
			qemuBinary, strings.Join(searchPaths, ":"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), qemuVersionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, q.Path, "--version").Output()
	if err != nil {
		return q, fmt.Errorf("%s does not run (%s --version: %w): reinstall QEMU", q.Path, q.Path, err)
	}
	if q.Version, err = ParseQEMUVersion(string(out)); err != nil {
		return q, fmt.Errorf("%s: %w", q.Path, err)
	}
	q.Sandbox = qemusandbox.Probe(context.Background(), q.Path)
	if q.VirtiofsdPath != "" {
		q.Virtiofsd = qemusandbox.ProbeVirtiofsd(context.Background(), q.VirtiofsdPath)
	}
	return q, nil
}

func locateQEMU(searchPaths []string) string {
	for _, p := range searchPaths {
		if p == "" || !filepath.IsAbs(p) {
			continue // a relative PATH entry would depend on the working directory
		}
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			if cand := filepath.Join(p, qemuBinary); isExecutable(cand) {
				return cand
			}
			continue
		}
		if isExecutable(p) {
			return p
		}
	}
	return ""
}

func firstFile(paths []string, executable bool) string {
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if executable && !isExecutable(p) {
			continue
		}
		return p
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// ParseQEMUVersion extracts the version from `qemu --version` output, e.g.
// "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)" gives "7.2.19".
func ParseQEMUVersion(out string) (string, error) {
	const marker = "QEMU emulator version "
	i := strings.Index(out, marker)
	if i < 0 {
		return "", fmt.Errorf("no %q in the --version output %q: is this QEMU?", strings.TrimSpace(marker), firstLine(out))
	}
	rest := out[i+len(marker):]
	end := strings.IndexFunc(rest, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if end < 0 {
		end = len(rest)
	}
	v := strings.Trim(rest[:end], ".")
	if !strings.Contains(v, ".") {
		return "", fmt.Errorf("malformed QEMU version in %q", firstLine(out[i:]))
	}
	return v, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
