package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// Exit codes and messages of install, uninstall and status that need no Docker and no root.
func TestInstallCommandsWithoutDocker(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock")
	empty := filepath.Join(dir, "nothing-here")
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"install", "--prefix", "relative/dir"}, ExitUsage, "", "--prefix"},
		{[]string{"install", "--prefix", "/"}, ExitUsage, "", "--prefix"},
		{[]string{"install", "--runtime-name", "runc"}, ExitUsage, "", "reserved"},
		{[]string{"install", "--accelerator", "hvf"}, ExitUsage, "", "--accelerator"},
		{[]string{"install", "--kernel", "/boot/vmlinuz"}, ExitUsage, "", ".deb"},
		{[]string{"install", "--output", "yaml"}, ExitUsage, "", `--output must be "text" or "json"`},
		{[]string{"install", "extra"}, ExitUsage, "", "takes no arguments"},
		{[]string{"install", "--template", "--from", "/tmp/kata-static-3.18.0-amd64.tar.zst"}, ExitUsage, "", "--template"},
		{[]string{"install", "--pool", "1", "--from", "/tmp/kata-static-3.18.0-amd64.tar.zst"}, ExitUsage, "", "--pool"},
		{[]string{"install", "--template", "--pool", "17"}, ExitUsage, "", "--pool 17: the pool holds 0 to 16 clones"},
		{[]string{"install", "--template=false", "--pool", "2"}, ExitUsage, "", "drop --template=false, or use --pool 0"},
		{[]string{"install", "--help"}, ExitOK, "--pool", ""},
		{[]string{"uninstall", "--bogus"}, ExitUsage, "", "unknown flag"},
		{[]string{"uninstall", "--prefix", empty, "--lock-file", lock}, ExitOK, "Nothing to uninstall", ""},
		{[]string{"uninstall", "--prefix", empty, "--lock-file", lock, "-o", "json"}, ExitOK, `"installed": false`, ""},
		{[]string{"status", "--prefix", empty}, ExitFailure, "Not installed", ""},
		{[]string{"status", "--prefix", "x"}, ExitUsage, "", "--prefix"},
		{[]string{"--help"}, ExitOK, "uninstall", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Execute(context.Background(), tt.args, &out, &errb)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", out.String(), tt.wantStdout)
			}
			if !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", errb.String(), tt.wantStderr)
			}
		})
	}
}

func TestStatusJSONNotInstalled(t *testing.T) {
	var out, errb bytes.Buffer
	code := Execute(context.Background(), []string{"status", "-o", "json", "--prefix", t.TempDir()}, &out, &errb)
	if code != ExitFailure {
		t.Errorf("exit %d", code)
	}
	var s map[string]any
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if s["schemaVersion"] != float64(1) || s["installed"] != false || s["hostAccelerator"] == "" {
		t.Errorf("status JSON %v", s)
	}
}
