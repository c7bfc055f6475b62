package e2e

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// upgradeRuntime is the runtime name of the upgrade tests: distinct from every other test's.
const upgradeRuntime = "kata-upgrade-test"

// flatLayoutCommit is the last commit whose installer wrote the flat layout (bin/ and share/
// directly under the prefix): the migration test installs with it.
const flatLayoutCommit = "c225738"

func (e *installEnv) upgradeArgs(prefix, artifacts string, extra ...string) []string {
	return append([]string{"--prefix", prefix, "--artifacts-dir", artifacts, "--kernel", e.kernel}, extra...)
}

// shimVariant copies the artifacts with a shim that differs by trailing bytes (the kernel ignores
// them): a new version that reuses the guest image, so no second build.
func shimVariant(t *testing.T, artifacts, tag string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{layout.ShimName, layout.AgentName} {
		copyExecutable(t, filepath.Join(artifacts, name), filepath.Join(dir, name))
	}
	f, err := os.OpenFile(filepath.Join(dir, layout.ShimName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n# " + tag + "\n"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// shimsRunningFrom counts the processes whose executable is under dir.
func shimsRunningFrom(dir string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+"/") {
			n++
		}
	}
	return n
}

func decode[T any](t *testing.T, r result, what string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%s: exit %d, %v\n%s\n%s", what, r.code, err, r.stdout, r.stderr)
	}
	return v
}

// install -> a container keeps running -> upgrade (a new shim: a new version beside the old,
// current switched, no daemon.json change, no reload) -> the running container still answers
// docker exec through the old shim -> new containers run -> rollback -> an upgrade killed after
// the switch is completed by a rerun -> uninstall: daemon.json byte-identical, nothing left.
func TestUpgradeRollbackAgainstEngine(t *testing.T) {
	e := requireInstall(t)
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	before := e.daemonJSONBytes(t)
	inst := kataDeploy(t, append([]string{"install", "-o", "json", "--runtime-name", upgradeRuntime}, e.upgradeArgs(prefix, e.artifacts)...)...)
	r1 := decode[install.Result](t, inst, "install")
	if inst.code != 0 || r1.Version == "" || r1.Smoke == nil || r1.Smoke.Error != "" {
		t.Fatalf("install: exit %d %+v\n%s", inst.code, r1, inst.stderr)
	}
	defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix)
	v1 := filepath.Join(prefix, "versions", r1.Version)

	run := docker(t, "", "run", "-d", "--runtime="+upgradeRuntime, "busybox", "sleep", "600")
	if run.code != 0 {
		t.Fatalf("docker run -d: %s", run.stderr)
	}
	id := strings.TrimSpace(run.stdout)
	defer docker(t, "", "rm", "-f", id)
	if n := shimsRunningFrom(v1); n == 0 {
		t.Errorf("no process runs from %s", v1)
	}

	afterInstall := e.daemonJSONBytes(t)
	artifacts2 := shimVariant(t, e.artifacts, "v2")
	start := time.Now()
	up := kataDeploy(t, append([]string{"upgrade", "-o", "json"}, e.upgradeArgs(prefix, artifacts2)...)...)
	r2 := decode[install.Result](t, up, "upgrade")
	if up.code != 0 || !r2.Switched || r2.PreviousVersion != r1.Version || r2.Reloaded || r2.Smoke == nil || r2.Smoke.GuestKernel != r1.GuestKernel {
		t.Fatalf("upgrade: exit %d %+v smoke %+v\n%s", up.code, r2, r2.Smoke, up.stderr)
	}
	t.Logf("upgrade to %s (from %s) took %s, smoke %.1f s", r2.Version, r1.Version, time.Since(start).Round(time.Millisecond), r2.Smoke.Seconds)
	if got := e.daemonJSONBytes(t); string(got) != string(afterInstall) {
		t.Errorf("the upgrade changed daemon.json:\n%s", got)
	}
	if target, _ := os.Readlink(filepath.Join(prefix, "current")); target != "versions/"+r2.Version {
		t.Errorf("current -> %s", target)
	}

	// The running container kept its shim: exec still works, served from the old version.
	if out := docker(t, "", "exec", id, "echo", "alive"); strings.TrimSpace(out.stdout) != "alive" {
		t.Errorf("docker exec into the container started before the upgrade: %q (exit %d) %s", out.stdout, out.code, out.stderr)
	}
	if n := shimsRunningFrom(v1); n == 0 {
		t.Errorf("the old shim of the running container is gone")
	}
	if out := docker(t, "", "run", "--rm", "--runtime="+upgradeRuntime, "busybox", "uname", "-r"); strings.TrimSpace(out.stdout) != r1.GuestKernel {
		t.Errorf("docker run after the upgrade: %q (exit %d) %s", out.stdout, out.code, out.stderr)
	}

	st := kataDeploy(t, "status", "-o", "json", "--prefix", prefix)
	s := decode[install.Status](t, st, "status")
	if st.code != 0 || s.CurrentVersion == nil || s.CurrentVersion.ID != r2.Version || s.PreviousVersion == nil || s.PreviousVersion.ID != r1.Version {
		t.Errorf("status: exit %d, current %+v previous %+v problems %v", st.code, s.CurrentVersion, s.PreviousVersion, s.Problems)
	}

	rb := kataDeploy(t, "rollback", "-o", "json", "--prefix", prefix)
	rr := decode[install.RollbackResult](t, rb, "rollback")
	if rb.code != 0 || rr.To != r1.Version || rr.From != r2.Version || rr.Smoke == nil || rr.Smoke.GuestKernel != r1.GuestKernel {
		t.Fatalf("rollback: exit %d %+v\n%s", rb.code, rr, rb.stderr)
	}
	if target, _ := os.Readlink(filepath.Join(prefix, "current")); target != "versions/"+r1.Version {
		t.Errorf("current -> %s after rollback", target)
	}

	// Killed right after the switch, an upgrade is completed by running it again.
	t.Setenv("KATA_DEPLOY_FAULT_AFTER", install.StepSwitched)
	killed := kataDeploy(t, append([]string{"upgrade", "--skip-smoke"}, e.upgradeArgs(prefix, artifacts2)...)...)
	os.Unsetenv("KATA_DEPLOY_FAULT_AFTER")
	if killed.code != -1 || !strings.Contains(killed.stderr, "killing myself") {
		t.Fatalf("upgrade was not killed: exit %d\n%s", killed.code, killed.stderr)
	}
	again := kataDeploy(t, append([]string{"upgrade", "-o", "json", "--skip-smoke"}, e.upgradeArgs(prefix, artifacts2)...)...)
	if r := decode[install.Result](t, again, "rerun"); again.code != 0 || r.Version != r2.Version {
		t.Errorf("rerun: exit %d %+v\n%s", again.code, r, again.stderr)
	}
	if st := kataDeploy(t, "status", "--prefix", prefix); st.code != 0 {
		t.Errorf("status after the rerun: exit %d\n%s", st.code, st.stdout)
	}

	docker(t, "", "rm", "-f", id)
	un := kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", un.code, un.stdout, un.stderr)
	}
	if got := e.daemonJSONBytes(t); string(got) != string(before) {
		t.Errorf("daemon.json after uninstall:\n%s\nwant:\n%s", got, before)
	}
	if _, err := os.Stat(prefix); !os.IsNotExist(err) {
		t.Errorf("the prefix is left: %v", err)
	}
}

// buildFlatLayoutKataDeploy builds kata-deploy as of flatLayoutCommit, from `git archive`.
func buildFlatLayoutKataDeploy(t *testing.T) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		missing(t, "not in a git checkout: the flat-layout kata-deploy is built from the repository's history")
	}
	if exec.Command("git", "cat-file", "-e", flatLayoutCommit+"^{commit}").Run() != nil {
		// A shallow clone. The migration itself is also covered by installer/install's
		// TestUpgradeMigratesFlatInstall; this test needs the real installer of that time.
		missing(t, "commit "+flatLayoutCommit+" (the flat layout's installer) is not in this clone: fetch the full history (git fetch --unshallow)")
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", strings.TrimSpace(string(top)), flatLayoutCommit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", flatLayoutCommit, err, out)
	}
	bin := filepath.Join(binDir, "kata-deploy-flat")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kata-deploy")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kata-deploy %s: %v\n%s", flatLayoutCommit, err, out)
	}
	return bin
}

// An install made by the kata-deploy before versions is moved into versions by upgrade (its
// guest image reused, its entry re-pointed through current) and uninstalled cleanly after.
func TestUpgradeMigratesFlatInstallAgainstEngine(t *testing.T) {
	e := requireInstall(t)
	old := buildFlatLayoutKataDeploy(t)
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	before := e.daemonJSONBytes(t)
	inst := run(t, old, append([]string{"install", "--skip-smoke", "--runtime-name", upgradeRuntime}, e.upgradeArgs(prefix, e.artifacts)...)...)
	if inst.code != 0 {
		t.Fatalf("the flat-layout install: exit %d\n%s\n%s", inst.code, inst.stdout, inst.stderr)
	}
	defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix)
	if _, err := os.Stat(filepath.Join(prefix, "bin", layout.ShimName)); err != nil {
		t.Fatalf("the old kata-deploy did not write the flat layout: %v", err)
	}
	st := decode[install.Status](t, kataDeploy(t, "status", "-o", "json", "--prefix", prefix), "status")
	if st.Layout != "flat" || !st.Healthy {
		t.Errorf("status of the flat install: %+v", st)
	}
	up := kataDeploy(t, append([]string{"upgrade", "-o", "json"}, e.upgradeArgs(prefix, e.artifacts)...)...)
	r := decode[install.Result](t, up, "upgrade")
	if up.code != 0 || !r.Migrated || !r.Reloaded || r.Smoke == nil || r.Smoke.Error != "" || strings.Contains(up.stderr, "building the guest image") {
		t.Fatalf("upgrade of the flat install: exit %d %+v smoke %+v\n%s", up.code, r, r.Smoke, up.stderr)
	}
	if _, err := os.Stat(filepath.Join(prefix, "bin")); !os.IsNotExist(err) {
		t.Errorf("the flat layout's bin/ is left: %v", err)
	}
	if !strings.Contains(dockerRuntimes(t), `"`+upgradeRuntime+`"`) {
		t.Errorf("docker info does not list %s after the migration", upgradeRuntime)
	}
	un := kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s", un.code, un.stderr)
	}
	if got := e.daemonJSONBytes(t); string(got) != string(before) {
		t.Errorf("daemon.json after uninstall:\n%s\nwant:\n%s", got, before)
	}
	if _, err := os.Stat(prefix); !os.IsNotExist(err) {
		t.Errorf("the prefix is left: %v", err)
	}
}
