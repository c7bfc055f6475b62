package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
)

// install --template --pool 1 -> the smoke container built the template and started a filler: a
// clone waits -> a container takes it and the pool is refilled -> status shows the pool ->
// uninstall: daemon.json byte-identical, no QEMU of the state directory, no mount below it, no
// filler, no <state_dir>.cache left.
func TestInstallPoolAgainstEngine(t *testing.T) {
	e := requireInstall(t)
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	before := e.daemonJSONBytes(t)
	stateDirStays := clearRuntimeDirs(t)
	cache := runtimecache.Dir(installedStateDir)
	inst := kataDeploy(t, append([]string{"install", "-o", "json", "--template", "--pool", "1", "--runtime-name", templateRuntime}, e.upgradeArgs(prefix, e.artifacts)...)...)
	r := decode[install.Result](t, inst, "install")
	if inst.code != 0 || !r.Template || r.Pool != 1 || r.Smoke == nil || r.Smoke.Error != "" {
		t.Fatalf("install --template --pool 1: exit %d %+v smoke %+v\n%s", inst.code, r, r.Smoke, inst.stderr)
	}
	defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix)

	pid := waitingClone(t, cache) // filled after the smoke container
	out := docker(t, "", "run", "--rm", "--runtime="+templateRuntime, "busybox", "echo", "pooled")
	if out.code != 0 || out.stdout != "pooled\n" {
		t.Fatalf("docker run: exit %d, stdout %q, stderr %s", out.code, out.stdout, out.stderr)
	}
	// Taken, the clone ends with the container (the shim tears down after docker run returns).
	for deadline := time.Now().Add(20 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the waiting clone (QEMU pid %s) was not taken by the container: it still runs", pid)
	}
	waitingClone(t, cache) // refilled

	f := templates(t, prefix)
	if f.Pool != 1 || f.PoolDir != runtimecache.PoolDir(cache) || f.PoolWaiting() < 1 {
		t.Errorf("status: pool %d in %s, fill %+v", f.Pool, f.PoolDir, f.PoolFill)
	}
	text := kataDeploy(t, "status", "--prefix", prefix).stdout
	if !strings.Contains(text, "Pool           on: 1 clone(s) kept waiting") || !strings.Contains(text, "Pool fill") {
		t.Errorf("status does not show the pool:\n%s", text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Pool") {
			t.Log(line)
		}
	}

	dry := kataDeploy(t, "uninstall", "--dry-run", "-o", "json", "--prefix", prefix)
	if res := decode[install.UninstallResult](t, dry, "uninstall --dry-run"); dry.code != 0 || !slices.Contains(res.Removed, runtimecache.PoolDir(cache)+"/") {
		t.Errorf("uninstall --dry-run: exit %d, removes %v", dry.code, res.Removed)
	}
	e.uninstallRestores(t, prefix, before)
	checkRuntimeDirsGone(t, stateDirStays)
	if out, _ := exec.Command("pgrep", "-af", "qemu-system.*"+installedStateDir+"[./]").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("QEMU of %s still runs after uninstall:\n%s", installedStateDir, out)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, " "+cache+"/") {
			t.Errorf("left mounted after uninstall: %s", line)
		}
	}
	if procs := processesUnder(prefix); len(procs) > 0 {
		t.Errorf("processes of the install still run after uninstall: %v", procs)
	}
}

// alive reports whether the process runs.
func alive(pid string) bool {
	n, err := strconv.Atoi(pid)
	return err == nil && n > 0 && syscall.Kill(n, 0) == nil
}

// processesUnder lists the processes run from an executable below dir.
func processesUnder(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+"/") {
			out = append(out, "pid "+e.Name()+" "+exe)
		}
	}
	return out
}
