package qemusandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// fakeQEMU writes a shell script standing in for QEMU; $2 is the value
// of -sandbox.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		wantArg     string
		wantMissing []string
	}{
		{
			name:    "everything",
			script:  `exit 0`,
			wantArg: "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		},
		{
			name:        "no sandbox at all",
			script:      `echo "-sandbox is disabled at compile time" >&2; exit 1`,
			wantMissing: Wanted,
		},
		{
			name: "no spawn",
			script: `case "$2" in *spawn*) echo "Invalid parameter 'spawn'" >&2; exit 1;; esac
exit 0`,
			wantArg:     "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny",
			wantMissing: []string{"spawn"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Probe(context.Background(), fakeQEMU(t, tt.script))
			if got := s.Arg(); got != tt.wantArg {
				t.Errorf("Arg() = %q, want %q", got, tt.wantArg)
			}
			if !slices.Equal(s.Missing, tt.wantMissing) {
				t.Errorf("Missing = %v, want %v", s.Missing, tt.wantMissing)
			}
			if s.Complete() != (len(tt.wantMissing) == 0) {
				t.Errorf("Complete() = %v", s.Complete())
			}
			if len(tt.wantMissing) > 0 && s.Reason == "" {
				t.Error("no reason given for what is missing")
			}
		})
	}
}

// TestProbeHostQEMU asks the QEMU of this machine, when there is one.
func TestProbeHostQEMU(t *testing.T) {
	q := testreq.Command(t, "qemu-system-x86_64", "qemu-system-x86")
	s := Probe(context.Background(), q)
	if !s.Enabled {
		t.Fatalf("-sandbox on does not work with %s: %s", q, s.Reason)
	}
	t.Logf("%s: -sandbox %s (missing %v)", q, s.Arg(), s.Missing)
}

func TestParseVirtiofsdHelp(t *testing.T) {
	tests := []struct {
		name string
		help string
		want []string
	}{
		{"C, QEMU 7.2", "    -o sandbox=namespace|chroot\n    -o source=PATH  shared directory tree\n", []string{"-o", "sandbox=namespace"}},
		{"C, before sandbox options", "    -o source=PATH  shared directory tree\n", nil},
		{"Rust", "      --sandbox <sandbox>  [default: namespace]\n      --seccomp <seccomp>\n", []string{"--sandbox=namespace", "--seccomp=kill"}},
		{"not virtiofsd", "usage: something else", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseVirtiofsdHelp(tt.help).SandboxArgs(); !slices.Equal(got, tt.want) {
				t.Errorf("SandboxArgs() = %q, want %q", got, tt.want)
			}
		})
	}
}
