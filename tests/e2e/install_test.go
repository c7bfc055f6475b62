package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

// installRuntime is the runtime name these tests register: kata_test.go registers "kata" in the
// same engine, and the two must never collide.
const installRuntime = "kata-install-test"

// installEnv is what the install tests share: the engine's daemon.json as it was, the artifacts
// and the kernel package.
type installEnv struct {
	daemonJSON string
	orig       []byte
	artifacts  string
	kernel     string
}

// requireInstall checks the prerequisites, builds the shim and the static agent, finds the
// kernel package, and puts the engine's daemon.json bytes back when the test ends.
func requireInstall(t *testing.T) *installEnv {
	t.Helper()
	requireEngine(t)
	if os.Geteuid() != 0 {
		missing(t, "install writes the engine's daemon.json and signals dockerd: run as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing(t, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): install's preflight fails without it")
	}
	e := &installEnv{daemonJSON: os.Getenv("KATA_TEST_DAEMON_JSON")}
	var err error
	if e.orig, err = os.ReadFile(e.daemonJSON); err != nil {
		t.Fatalf("the test engine's daemon.json: %v", err)
	}
	t.Cleanup(func() {
		// Only when this test's runtime is still there: a difference without it is someone
		// else's edit (another test binary using the same engine), which must not be undone.
		if cur, _ := os.ReadFile(e.daemonJSON); !bytes.Equal(cur, e.orig) && bytes.Contains(cur, []byte(`"`+installRuntime+`"`)) {
			t.Errorf("daemon.json still registers %s after the test; putting the original bytes back", installRuntime)
			_ = os.WriteFile(e.daemonJSON, e.orig, 0o644)
			_ = testenv.ReloadDockerd()
		}
	})
	e.artifacts = buildInstallArtifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if e.kernel, err = testenv.KernelDeb(ctx); err != nil {
		missing(t, err.Error())
	}
	return e
}

// buildInstallArtifacts builds containerd-shim-kata-v2 and a static kata-agent into a directory
// of their own (the runtime tests build theirs into binDir).
func buildInstallArtifacts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(binDir, "install-artifacts")
	if _, err := os.Stat(filepath.Join(dir, layout.AgentName)); err == nil {
		return dir
	}
	for _, b := range []struct{ name, pkg string }{
		{layout.ShimName, "github.com/kata-deploy/kata-deploy/cmd/containerd-shim-kata-v2"},
		{layout.AgentName, "github.com/kata-deploy/kata-deploy/cmd/kata-agent"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the agent runs in an initrd without libc
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", b.name, err, out)
		}
	}
	return dir
}

func (e *installEnv) args(prefix string, extra ...string) []string {
	return append([]string{"--prefix", prefix, "--runtime-name", installRuntime, "--artifacts-dir", e.artifacts, "--kernel", e.kernel}, extra...)
}

func (e *installEnv) daemonJSONBytes(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(e.daemonJSON)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func dockerRuntimes(t *testing.T) string {
	t.Helper()
	return run(t, "docker", "info", "--format", "{{json .Runtimes}}").stdout
}

// install -> docker info lists the runtime -> smoke container -> a second install is a no-op
// under a second -> docker run prints the guest kernel -> uninstall -> daemon.json byte-identical
// and nothing left on disk.
func TestInstallUninstallAgainstEngine(t *testing.T) {
	e := requireInstall(t)
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	before := e.daemonJSONBytes(t)
	stateDirStays := clearRuntimeDirs(t)

	// A dry run prints the plan and the diff, and changes nothing.
	dry := kataDeploy(t, append([]string{"install", "--dry-run"}, e.args(prefix)...)...)
	if dry.code != 0 || !strings.Contains(dry.stdout, "edit-daemon-json") || !strings.Contains(dry.stdout, `+    "`+installRuntime+`": {`) {
		t.Fatalf("dry run: exit %d\n%s\n%s", dry.code, dry.stdout, dry.stderr)
	}
	if _, err := os.Stat(prefix); !os.IsNotExist(err) || !bytes.Equal(e.daemonJSONBytes(t), before) {
		t.Fatal("the dry run changed something")
	}

	res := kataDeploy(t, append([]string{"install", "-o", "json"}, e.args(prefix)...)...)
	if res.code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	var r install.Result
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("install -o json: %v\n%s", err, res.stdout)
	}
	if !r.Changed || !r.Reloaded || r.GuestKernel == "" || r.DaemonJSON != e.daemonJSON {
		t.Errorf("install result: %+v", r)
	}
	if !strings.Contains(dockerRuntimes(t), `"`+installRuntime+`"`) {
		t.Errorf("docker info does not list %s", installRuntime)
	}
	if r.Smoke == nil || r.Smoke.Skipped != "" || r.Smoke.GuestKernel != r.GuestKernel {
		t.Errorf("smoke test: %+v (guest kernel %q)\n%s", r.Smoke, r.GuestKernel, res.stderr)
	} else {
		t.Logf("smoke: %s printed %s in %.1f s", r.Smoke.Image, r.Smoke.GuestKernel, r.Smoke.Seconds)
	}

	st := kataDeploy(t, "status", "-o", "json", "--prefix", prefix)
	var s install.Status
	if err := json.Unmarshal([]byte(st.stdout), &s); err != nil || st.code != 0 || !s.Healthy || !s.Docker.SeesRuntime {
		t.Errorf("status: exit %d, %v\n%s", st.code, err, st.stdout)
	}

	// A second install with the same inputs changes nothing, reloads nothing, in under a second.
	afterInstall, manifestBytes := e.daemonJSONBytes(t), readFile(t, filepath.Join(prefix, "manifest.json"))
	start := time.Now()
	again := kataDeploy(t, append([]string{"install", "-o", "json"}, e.args(prefix)...)...)
	elapsed := time.Since(start)
	var r2 install.Result
	if err := json.Unmarshal([]byte(again.stdout), &r2); err != nil || again.code != 0 || r2.Changed || r2.Reloaded {
		t.Errorf("second install: exit %d, %v, %+v\n%s", again.code, err, r2, again.stderr)
	}
	if elapsed > time.Second {
		t.Errorf("second install took %s, want under a second", elapsed)
	}
	if !bytes.Equal(e.daemonJSONBytes(t), afterInstall) || !bytes.Equal(readFile(t, filepath.Join(prefix, "manifest.json")), manifestBytes) {
		t.Error("the second install changed daemon.json or the manifest")
	}

	// What a user types.
	if r.Smoke != nil && r.Smoke.Skipped == "" && r.Smoke.Error == "" {
		out := docker(t, "", "run", "--rm", "--runtime="+installRuntime, "busybox", "uname", "-r")
		if strings.TrimSpace(out.stdout) != r.GuestKernel {
			t.Errorf("docker run --runtime=%s busybox uname -r = %q (exit %d, %s), want %q", installRuntime, out.stdout, out.code, out.stderr, r.GuestKernel)
		}
	}

	e.uninstallRestores(t, prefix, before)
	checkRuntimeDirsGone(t, stateDirStays) // the smoke container made them
	if strings.Contains(dockerRuntimes(t), `"`+installRuntime+`"`) {
		t.Errorf("docker info still lists %s", installRuntime)
	}
}

// An invalid daemon.json is reported with its line and column, and nothing changes.
func TestInstallRefusesInvalidDaemonJSON(t *testing.T) {
	e := requireInstall(t)
	bad := []byte("{\n  \"debug\": false,\n  \"runtimes\": {},\n}\n") // a trailing comma
	before := e.daemonJSONBytes(t)
	if err := os.WriteFile(e.daemonJSON, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(e.daemonJSON, before, 0o644) // no reload: dockerd never loaded the bad file
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	res := kataDeploy(t, append([]string{"install", "--skip-smoke"}, e.args(prefix)...)...)
	if res.code != 1 || !strings.Contains(res.stderr, "line 4, column 1") || !strings.Contains(res.stderr, "nothing was changed") {
		t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if got := readFile(t, e.daemonJSON); !bytes.Equal(got, bad) {
		t.Errorf("the invalid daemon.json was changed: %q", got)
	}
	if _, err := os.Stat(prefix); !os.IsNotExist(err) {
		t.Error("files were installed despite the invalid daemon.json")
	}
}

// Killed with SIGKILL after a step, the next run completes: uninstall after the daemon.json write
// restores the bytes; install after the image build finishes the install.
func TestInstallKilledThenCompleted(t *testing.T) {
	e := requireInstall(t)
	for _, tc := range []struct{ step, then string }{
		{"daemon-json-written", "uninstall"},
		{"image", "install"},
	} {
		t.Run(tc.step+"/then-"+tc.then, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "kata-deploy")
			before := e.daemonJSONBytes(t)
			t.Setenv("KATA_DEPLOY_FAULT_AFTER", tc.step)
			killed := kataDeploy(t, append([]string{"install", "--skip-smoke"}, e.args(prefix)...)...)
			os.Unsetenv("KATA_DEPLOY_FAULT_AFTER")
			if killed.code != -1 || !strings.Contains(killed.stderr, "killing myself") {
				t.Fatalf("install was not killed after %s: exit %d\n%s", tc.step, killed.code, killed.stderr)
			}
			var doc map[string]any
			if err := json.Unmarshal(e.daemonJSONBytes(t), &doc); err != nil && len(bytes.TrimSpace(e.daemonJSONBytes(t))) > 0 {
				t.Fatalf("daemon.json is not valid JSON after the kill: %v", err)
			}
			if tc.then == "install" {
				res := kataDeploy(t, append([]string{"install", "--skip-smoke"}, e.args(prefix)...)...)
				if res.code != 0 || !strings.Contains(dockerRuntimes(t), `"`+installRuntime+`"`) {
					t.Fatalf("rerun install: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
				}
				if st := kataDeploy(t, "status", "--prefix", prefix); st.code != 0 {
					t.Errorf("status after the rerun: exit %d\n%s", st.code, st.stdout)
				}
			}
			e.uninstallRestores(t, prefix, before)
			if strings.Contains(dockerRuntimes(t), `"`+installRuntime+`"`) {
				t.Errorf("docker info still lists %s", installRuntime)
			}
		})
	}
}

// uninstallRestores runs uninstall and requires daemon.json as it was before the install and
// no prefix left.
func (e *installEnv) uninstallRestores(t *testing.T, prefix string, before []byte) {
	t.Helper()
	un := kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", un.code, un.stdout, un.stderr)
	}
	e.checkRestored(t, before)
	if _, err := os.Stat(prefix); !os.IsNotExist(err) {
		t.Errorf("the prefix is left: %v", err)
	}
}

// checkRestored requires daemon.json to be byte for byte what it was before the install.
func (e *installEnv) checkRestored(t *testing.T, before []byte) {
	t.Helper()
	got := e.daemonJSONBytes(t)
	if bytes.Equal(got, before) {
		return
	}
	hint := ""
	if !bytes.Contains(got, []byte(`"`+installRuntime+`"`)) {
		hint = " (the test's runtime is gone: did another process edit the engine's daemon.json meanwhile? run the e2e tests alone)"
	}
	t.Errorf("daemon.json after uninstall%s:\n%s\nwant (byte for byte):\n%s", hint, got, before)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
