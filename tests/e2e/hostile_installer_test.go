package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/fakedocker"
)

// A copy of this test binary, run as nobody, is the hostile "dockerd" of the tests below.
func init() { fakedocker.Serve() }

// Root runs `kata-deploy install` against a socket served by a process called dockerd that
// nobody runs, at a path of nobody's: install refuses, saying why, runs nothing of that process,
// and changes nothing (no prefix, neither daemon.json written).
func TestHostileInstallerRefusesAnotherUsersDockerd(t *testing.T) {
	e := requireInstall(t)
	fake := fakedocker.StartProcess(t, 65534, 65534)
	engineBefore := e.daemonJSONBytes(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"install -H", []string{"install", "-H", fake.Host}},
		{"install --dry-run -H", []string{"install", "--dry-run", "-H", fake.Host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "kata-deploy")
			res := kataDeploy(t, append(tc.args, e.args(prefix)...)...)
			if res.code == 0 {
				t.Fatalf("%v succeeded against a dockerd run by nobody:\n%s%s", tc.args, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, "runs as uid 65534, not root") {
				t.Errorf("the refusal does not say why:\n%s", res.stderr)
			}
			if data, err := os.ReadFile(fake.Marker); err == nil {
				t.Errorf("the binary of the process run by nobody was run: %s", data)
			}
			if _, err := os.Lstat(fake.ConfigFile); err == nil {
				t.Errorf("%s, the daemon.json on the fake's command line, was written", fake.ConfigFile)
			}
			if _, err := os.Lstat(prefix); err == nil {
				t.Errorf("%s was created", prefix)
			}
			if !bytes.Equal(e.daemonJSONBytes(t), engineBefore) {
				t.Errorf("the engine's daemon.json changed")
			}
		})
	}
}
