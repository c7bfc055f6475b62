package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// templateRuntime is the runtime name of the templating install test: distinct from every other
// test's.
const templateRuntime = "kata-template-install-test"

// installedStateDir is the state directory of the runtime kata-deploy installs (the
// configuration's default); its cache, <state_dir>.cache, holds the VM templates.
const installedStateDir = config.DefaultStateDir

// clearRuntimeDirs removes the installed runtime's cache, and its state directory when it is
// empty, before an install test: they are the runtime's, rebuilt on demand, and shared by every
// install test (which run one at a time, under the VM lock); one left by an earlier run would
// hide what this test's uninstall leaves. It reports whether the state directory stays (a
// container of another install still has its directory there).
func clearRuntimeDirs(t *testing.T) (stateDirStays bool) {
	t.Helper()
	cache := runtimecache.Dir(installedStateDir)
	if _, err := os.Lstat(cache); err == nil {
		t.Logf("removing %s, left by an earlier run", cache)
		if err := os.RemoveAll(cache); err != nil {
			t.Fatal(err)
		}
	}
	err := os.Remove(installedStateDir)
	_, statErr := os.Lstat(installedStateDir)
	if statErr == nil {
		t.Logf("%s is not empty (%v): its removal by uninstall is not checked", installedStateDir, err)
	}
	return statErr == nil
}

// checkRuntimeDirsGone requires uninstall to have left none of the runtime's directories.
func checkRuntimeDirsGone(t *testing.T, stateDirStays bool) {
	t.Helper()
	dirs := []string{runtimecache.Dir(installedStateDir)}
	if !stateDirStays {
		dirs = append(dirs, installedStateDir)
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); err == nil {
			entries, _ := os.ReadDir(d)
			t.Errorf("uninstall left %s (%d entries)", d, len(entries))
		}
	}
}

// engineLog is the test engine's containerd log, where the shims' warnings go.
func engineLog(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KATA_TEST_ENGINE_LOGS")
	if dir == "" {
		missing(t, "KATA_TEST_ENGINE_LOGS is not set: source the test engine's env file (hack/engine.sh up)")
	}
	return filepath.Join(dir, "containerd.log")
}

// logSize is where the log ends now; logSince what was written after.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func logSince(t *testing.T, path string, off int64) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off > int64(len(data)) {
		off = 0
	}
	return string(data[off:])
}

// templates is what status says of VM templating under prefix.
func templates(t *testing.T, prefix string) *install.FactoryStatus {
	t.Helper()
	s := decode[install.Status](t, kataDeploy(t, "status", "-o", "json", "--prefix", prefix), "status")
	if s.Factory == nil {
		t.Fatalf("status shows nothing of templating: %+v", s)
	}
	return s.Factory
}

// readyTemplate returns the ready template other than the keys given; it fails the test unless
// there is exactly one.
func readyTemplate(t *testing.T, f *install.FactoryStatus, not ...string) install.TemplateStatus {
	t.Helper()
	var found []install.TemplateStatus
	for _, tp := range f.Templates {
		if tp.Ready && !slices.Contains(not, tp.Key) {
			found = append(found, tp)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one ready template other than %v in %s, got %+v", not, f.TemplatesDir, f.Templates)
	}
	return found[0]
}

// lastClone is the modification time of a template's ready file, which every clone touches.
func lastClone(t *testing.T, dir string) time.Time {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "ready"))
	if err != nil {
		t.Fatalf("the template %s: %v", dir, err)
	}
	return fi.ModTime()
}

// install --template -> the smoke container built a template -> a container is a clone of it ->
// upgrade (a new shim): the next container is a clone of a template of a new key, the old one is
// not used -> the template's memory file deleted: the next container boots cold (logged), the one
// after is a clone of a rebuilt template -> rollback keeps templating on -> uninstall: daemon.json
// byte-identical, no template, no <state_dir>.cache left.
func TestInstallTemplateAgainstEngine(t *testing.T) {
	e := requireInstall(t)
	log := engineLog(t)
	prefix := filepath.Join(t.TempDir(), "kata-deploy")
	before := e.daemonJSONBytes(t)
	stateDirStays := clearRuntimeDirs(t)
	inst := kataDeploy(t, append([]string{"install", "-o", "json", "--template", "--runtime-name", templateRuntime}, e.upgradeArgs(prefix, e.artifacts)...)...)
	r1 := decode[install.Result](t, inst, "install")
	if inst.code != 0 || !r1.Template || r1.Smoke == nil || r1.Smoke.Error != "" {
		t.Fatalf("install --template: exit %d %+v smoke %+v\n%s", inst.code, r1, r1.Smoke, inst.stderr)
	}
	defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix)
	run := func(what string) {
		t.Helper()
		out := docker(t, "", "run", "--rm", "--runtime="+templateRuntime, "busybox", "echo", what)
		if out.code != 0 || out.stdout != what+"\n" {
			t.Fatalf("docker run (%s): exit %d, stdout %q, stderr %s", what, out.code, out.stdout, out.stderr)
		}
	}

	f := templates(t, prefix)
	if !f.Template || f.TemplatesDir != runtimecache.TemplatesDir(runtimecache.Dir(installedStateDir)) {
		t.Fatalf("status: templating %+v", f)
	}
	k1 := readyTemplate(t, f) // the smoke container's
	if k1.MemoryBytes <= 0 || k1.Created == nil {
		t.Errorf("template %+v", k1)
	}
	t.Logf("template %s: %.1f MiB of memory file on disk", k1.Key, float64(k1.MemoryBytes)/(1<<20))
	used := lastClone(t, k1.Path)
	run("a clone")
	if !lastClone(t, k1.Path).After(used) {
		t.Errorf("the container was not a clone of the template %s", k1.Key)
	}

	// The shim's identity is in the key: the upgraded shim builds a template of its own.
	up := kataDeploy(t, append([]string{"upgrade", "-o", "json"}, e.upgradeArgs(prefix, shimVariant(t, e.artifacts, "template-v2"))...)...)
	if r := decode[install.Result](t, up, "upgrade"); up.code != 0 || !r.Switched || !r.Template {
		t.Fatalf("upgrade: exit %d %+v\n%s", up.code, r, up.stderr)
	}
	oldUsed := lastClone(t, k1.Path)
	k2 := readyTemplate(t, templates(t, prefix), k1.Key) // the upgrade's smoke container built it
	used = lastClone(t, k2.Path)
	run("after the upgrade")
	if !lastClone(t, k2.Path).After(used) {
		t.Errorf("the container after the upgrade was not a clone of the new template %s", k2.Key)
	}
	if fi, err := os.Stat(filepath.Join(k1.Path, "ready")); err == nil && !fi.ModTime().Equal(oldUsed) {
		t.Errorf("the template of the version before the upgrade (%s) was still used", k1.Key)
	}

	// A template whose memory file is gone: the container boots cold, the next one rebuilds it.
	if err := os.Remove(filepath.Join(k2.Path, "memory")); err != nil {
		t.Fatal(err)
	}
	off := logSize(log)
	run("cold")
	if l := logSince(t, log, off); !strings.Contains(l, "VM template not used") {
		t.Errorf("the cold boot is not in the shim's log (%s)", log)
	}
	run("rebuilt")
	k2b := readyTemplate(t, templates(t, prefix), k1.Key)
	t.Logf("after the upgrade: template %s, rebuilt at %s", k2.Key, k2b.Created)
	text := kataDeploy(t, "status", "--prefix", prefix).stdout
	if !strings.Contains(text, "Templating     on") || !strings.Contains(text, k2b.Key+": ready") {
		t.Errorf("status does not show templating and the template %s:\n%s", k2b.Key, text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Templat") {
			t.Log(line)
		}
	}
	if k2b.Key != k2.Key || k2b.Created == nil || !k2b.Created.After(*k2.Created) || k2b.MemoryBytes <= 0 {
		t.Errorf("the template was not rebuilt: before %+v, after %+v", k2, k2b)
	}

	rb := kataDeploy(t, "rollback", "-o", "json", "--prefix", prefix)
	if r := decode[install.RollbackResult](t, rb, "rollback"); rb.code != 0 || r.To != r1.Version {
		t.Errorf("rollback: exit %d %+v\n%s", rb.code, r, rb.stderr)
	} else if !templates(t, prefix).Template {
		t.Error("templating is off after the rollback")
	}

	e.uninstallRestores(t, prefix, before)
	checkRuntimeDirsGone(t, stateDirStays)
}
