package qemusandbox

import (
	"context"
	"os/exec"
	"strings"
)

// Virtiofsd is how a virtiofsd binary sandboxes itself, as its --help says.
type Virtiofsd struct {
	// Rust is the standalone Rust virtiofsd (--sandbox, --seccomp);
	// otherwise the C one QEMU shipped up to 7.2 (-o sandbox=, seccomp
	// always on, killing the process on a forbidden system call).
	Rust bool `json:"rust"`
	// Namespace: it can pivot_root into the shared directory inside its
	// own mount, pid and network namespaces.
	Namespace bool `json:"namespace"`
	// Seccomp: it filters its own system calls.
	Seccomp bool `json:"seccomp"`
}

// SandboxArgs are the arguments asking for the strictest sandbox the binary
// offers: namespaces, and a seccomp filter that kills on a violation.
func (v Virtiofsd) SandboxArgs() []string {
	var args []string
	switch {
	case v.Rust && v.Namespace:
		args = append(args, "--sandbox=namespace")
	case v.Namespace:
		args = append(args, "-o", "sandbox=namespace")
	}
	if v.Rust && v.Seccomp {
		args = append(args, "--seccomp=kill")
	}
	return args
}

// String describes the sandbox for logs and check.
func (v Virtiofsd) String() string {
	var parts []string
	if v.Namespace {
		parts = append(parts, "namespace sandbox (pivot_root into the share)")
	} else {
		parts = append(parts, "no namespace sandbox")
	}
	if v.Seccomp {
		parts = append(parts, "seccomp filter (kill)")
	} else {
		parts = append(parts, "no seccomp filter")
	}
	return strings.Join(parts, ", ")
}

// ProbeVirtiofsd reads virtiofsd's --help.
func ProbeVirtiofsd(ctx context.Context, path string) Virtiofsd {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// Both versions print their help and exit 0; the C one on stdout.
	out, _ := exec.CommandContext(ctx, path, "--help").CombinedOutput()
	return ParseVirtiofsdHelp(string(out))
}

// ParseVirtiofsdHelp tells the two virtiofsd apart by their options.
func ParseVirtiofsdHelp(help string) Virtiofsd {
	if strings.Contains(help, "--seccomp") {
		return Virtiofsd{Rust: true, Namespace: strings.Contains(help, "--sandbox"), Seccomp: true}
	}
	// The C virtiofsd always installs its seccomp filter; its help
	// lists "-o sandbox=namespace|chroot" since QEMU 6.0.
	c := Virtiofsd{Seccomp: strings.Contains(help, "-o source=")}
	c.Namespace = strings.Contains(help, "sandbox=namespace")
	return c
}
