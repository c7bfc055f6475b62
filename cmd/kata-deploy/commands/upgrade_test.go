package commands

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// Exit codes and messages of upgrade and rollback that need no Docker and no root.
func TestUpgradeCommandsWithoutAnInstall(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "lock")
	empty := filepath.Join(dir, "nothing-here")
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		{[]string{"upgrade", "--prefix", empty, "--lock-file", lock}, ExitFailure, "nothing to upgrade"},
		{[]string{"upgrade", "--prefix", "relative"}, ExitUsage, "--prefix"},
		{[]string{"upgrade", "--runtime-name", "x"}, ExitUsage, "unknown flag"},
		{[]string{"upgrade", "extra"}, ExitUsage, "takes no arguments"},
		{[]string{"rollback", "--prefix", empty, "--lock-file", lock}, ExitFailure, "nothing to roll back"},
		{[]string{"rollback", "--output", "yaml"}, ExitUsage, `--output must be "text" or "json"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Execute(context.Background(), tt.args, &out, &errb)
			if code != tt.wantCode || !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tt.wantCode, errb.String(), tt.wantStderr)
			}
		})
	}
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"--help"}, &out, &out); code != ExitOK ||
		!strings.Contains(out.String(), "upgrade") || !strings.Contains(out.String(), "rollback") {
		t.Errorf("--help does not list upgrade and rollback:\n%s", out.String())
	}
}
