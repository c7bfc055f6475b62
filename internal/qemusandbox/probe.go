package qemusandbox

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Wanted are the -sandbox sub-options the runtime asks for, each set to
// "deny": obsolete system calls, privilege changes (set*id: QEMU must never
// change its own credentials), spawning processes, and changing scheduling
// or CPU affinity.
var Wanted = []string{"obsolete", "elevateprivileges", "spawn", "resourcecontrol"}

// probeTimeout bounds one dry run; QEMU with -machine none exits within
// milliseconds, but hosts under load are slow.
const probeTimeout = 30 * time.Second

// Support is what a QEMU binary accepts.
type Support struct {
	// Enabled: `-sandbox on` works (QEMU built with seccomp, and the
	// kernel accepted the filter).
	Enabled bool `json:"enabled"`
	// Options are the sub-options of Wanted that work, in Wanted's order.
	Options []string `json:"options"`
	// Missing are the sub-options of Wanted that do not, and Reason why
	// (QEMU's own message), for the log and for check.
	Missing []string `json:"missing,omitempty"`
	Reason  string   `json:"reason,omitempty"`
}

// Arg is the value of QEMU's -sandbox option, or "" when the sandbox is
// not available.
func (s Support) Arg() string {
	if !s.Enabled {
		return ""
	}
	parts := []string{"on"}
	for _, o := range s.Options {
		parts = append(parts, o+"=deny")
	}
	return strings.Join(parts, ",")
}

// Complete reports whether every wanted option is available.
func (s Support) Complete() bool { return s.Enabled && len(s.Missing) == 0 }

// Probe runs qemu with the sandbox on and every wanted option, and failing
// that, each option alone, in a machine-less dry run that quits at once.
func Probe(ctx context.Context, qemu string) Support {
	if _, err := dryRun(ctx, qemu, withOptions(Wanted)); err == nil {
		return Support{Enabled: true, Options: append([]string(nil), Wanted...)}
	}
	msg, err := dryRun(ctx, qemu, "on")
	if err != nil {
		return Support{Missing: append([]string(nil), Wanted...), Reason: reason(msg, err)}
	}
	s := Support{Enabled: true}
	var reasons []string
	for _, o := range Wanted {
		if msg, err := dryRun(ctx, qemu, withOptions([]string{o})); err != nil {
			s.Missing = append(s.Missing, o)
			reasons = append(reasons, o+": "+reason(msg, err))
			continue
		}
		s.Options = append(s.Options, o)
	}
	s.Reason = strings.Join(reasons, "; ")
	return s
}

func withOptions(opts []string) string {
	return Support{Enabled: true, Options: opts}.Arg()
}

// dryRun starts QEMU without a machine, with its monitor on stdin, and
// tells it to quit: it exits 0 only if it accepted the option and applied
// the filter.
func dryRun(ctx context.Context, qemu, sandbox string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-sandbox", sandbox, "-machine", "none", "-nodefaults",
		"-display", "none", "-S", "-serial", "none", "-parallel", "none", "-monitor", "stdio")
	cmd.Stdin = strings.NewReader("quit\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	return stderr.String(), err
}

func reason(stderr string, err error) string {
	if s := strings.TrimSpace(stderr); s != "" {
		s, _, _ = strings.Cut(s, "\n")
		return s
	}
	return fmt.Sprint(err)
}
