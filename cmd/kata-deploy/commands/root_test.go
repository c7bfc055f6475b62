package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestExecuteExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"version"}, ExitOK, "kata-deploy ", ""},
		{[]string{"version", "--output", "json"}, ExitOK, `"goVersion"`, ""},
		{[]string{"version", "--output", "xml"}, ExitUsage, "", `--output must be "text" or "json"`},
		{[]string{"version", "extra"}, ExitUsage, "", "takes no arguments"},
		{[]string{"--bogus"}, ExitUsage, "", "unknown flag"},
		{[]string{"check", "--bogus"}, ExitUsage, "", "unknown flag"},
		{[]string{"no-such-command"}, ExitUsage, "", "unknown command"},
		{[]string{"--help"}, ExitOK, "sudo kata-deploy install", ""},
		{[]string{"completion", "zsh"}, ExitOK, "kata-deploy", ""},
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

func TestVersionJSON(t *testing.T) {
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"version", "-o", "json"}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var v map[string]string
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "commit", "goVersion", "platform"} {
		if v[k] == "" {
			t.Errorf("version JSON lacks %q: %v", k, v)
		}
	}
}
