package install

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// newAgent makes the next install or upgrade produce a new version.
func (f *fixture) newAgent(t testing.TB, content string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.AgentName), []byte(content), 0o755))
}

func (f *fixture) upgrade(mod func(*UpgradeOptions)) (*Result, error) {
	i := f.options()
	o := UpgradeOptions{Common: i.Common, ArtifactOptions: i.ArtifactOptions}
	if mod != nil {
		mod(&o)
	}
	return Upgrade(context.Background(), o, f.deps())
}

func (f *fixture) rollback(mod func(*RollbackOptions)) (*RollbackResult, error) {
	o := RollbackOptions{Common: f.options().Common}
	if mod != nil {
		mod(&o)
	}
	return Rollback(context.Background(), o, f.deps())
}

func (f *fixture) manifest(t testing.TB) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Load(f.prefix())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) status(t testing.TB) *Status {
	t.Helper()
	s, err := GetStatus(context.Background(), f.statusOptions(), f.deps())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// versionsOnDisk lists <prefix>/versions.
func (f *fixture) versionsOnDisk() []string {
	entries, _ := os.ReadDir(filepath.Join(f.prefix(), layout.VersionsDirName))
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

// Three upgrades: exactly one previous version is kept; rollback switches back and forth without
// touching daemon.json or reloading Docker.
func TestUpgradeKeepsOnePreviousAndRollsBack(t *testing.T) {
	f := newFixture(t, []byte(origDaemonJSON))
	var ids []string
	for i, agent := range []string{"agent v1", "agent v2", "agent v3"} {
		f.newAgent(t, agent)
		op := func() (*Result, error) { return f.upgrade(nil) }
		if i == 0 {
			op = func() (*Result, error) { return f.install(nil) }
		}
		res, err := op()
		if err != nil {
			t.Fatalf("%s: %v", agent, err)
		}
		ids = append(ids, res.Version)
		if i > 0 && (res.PreviousVersion != ids[i-1] || !res.Switched || res.Reloaded) {
			t.Errorf("%s: %+v", agent, res)
		}
	}
	djAfterInstall := f.file(f.daemonJSON())
	reloads := f.daemon.State().Reloads
	m := f.manifest(t)
	if m.Current != ids[2] || m.Previous != ids[1] || len(m.Versions) != 2 {
		t.Fatalf("current %s previous %s versions %+v, ids %v", m.Current, m.Previous, m.Versions, ids)
	}
	if got := f.versionsOnDisk(); !slices.Equal(got, sorted(ids[1], ids[2])) {
		t.Errorf("versions on disk %v, want %v and %v", got, ids[1], ids[2])
	}
	s := f.status(t)
	if !s.Healthy || s.CurrentVersion == nil || s.CurrentVersion.ID != ids[2] || s.PreviousVersion == nil || s.PreviousVersion.ID != ids[1] ||
		!s.PreviousVersion.Intact || len(s.OtherVersions) != 0 || s.Layout != manifest.LayoutVersioned {
		t.Errorf("status %+v", s)
	}

	dry, err := f.rollback(func(o *RollbackOptions) { o.DryRun = true })
	if err != nil || dry.From != ids[2] || dry.To != ids[1] || f.manifest(t).Current != ids[2] {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	rb, err := f.rollback(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rb.From != ids[2] || rb.To != ids[1] || rb.Smoke == nil || rb.Smoke.GuestKernel != guestKernel || f.layout().Version != ids[1] {
		t.Errorf("rollback %+v smoke %+v", rb, rb.Smoke)
	}
	if target, _ := os.Readlink(filepath.Join(f.prefix(), "current")); target != "versions/"+ids[1] {
		t.Errorf("current -> %s", target)
	}
	if string(f.file(filepath.Join(f.prefix(), "current", "share", "kata-deploy", "initrd.img"))) != "initrd of kernel package v1agent v2" {
		t.Error("current does not serve the rolled-back version's initrd")
	}
	// A second rollback undoes the first.
	if rb, err = f.rollback(nil); err != nil || rb.To != ids[2] || f.layout().Version != ids[2] {
		t.Errorf("second rollback %+v %v", rb, err)
	}
	if !bytes.Equal(f.file(f.daemonJSON()), djAfterInstall) || f.daemon.State().Reloads != reloads {
		t.Error("rollback touched daemon.json or reloaded Docker")
	}
	// An upgrade with the artifacts of the current version changes nothing.
	if res, err := f.upgrade(nil); err != nil || res.Changed {
		t.Errorf("upgrade to the same artifacts: %+v %v", res, err)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if got := string(f.file(f.daemonJSON())); got != origDaemonJSON {
		t.Errorf("daemon.json = %q", got)
	}
	if tree := f.tree(); len(tree) != 0 {
		t.Errorf("left %v", tree)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// Upgrading back to the previous version's artifacts reuses it: no build, a swap.
func TestUpgradeToThePreviousArtifactsReusesIt(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	first, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v2")
	second, err := f.upgrade(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v1")
	builds := f.builds
	res, err := f.upgrade(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := f.manifest(t)
	if res.Version != first.Version || f.builds != builds || m.Current != first.Version || m.Previous != second.Version {
		t.Errorf("result %+v, builds %d, current %s previous %s", res, f.builds-builds, m.Current, m.Previous)
	}
}

func TestUpgradeAndRollbackRefusals(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.upgrade(nil); err == nil || !strings.Contains(err.Error(), "kata-deploy install") {
		t.Errorf("upgrade without an install: %v", err)
	}
	if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("rollback without an install: %v", err)
	}
	if tree := f.tree(); len(tree) != 0 {
		t.Errorf("refusals changed things: %v", tree)
	}
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "no previous version") {
		t.Errorf("rollback with no previous version: %v", err)
	}
	f.newAgent(t, "agent v2")
	if _, err := f.upgrade(nil); err != nil {
		t.Fatal(err)
	}
	m := f.manifest(t)
	prev := layout.Layout{Prefix: f.prefix(), Version: m.Previous}
	must(t, os.Remove(prev.Initrd()))
	if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "initrd.img is missing") {
		t.Errorf("rollback to a damaged version: %v", err)
	}
	if f.layout().Version != m.Current {
		t.Error("a refused rollback switched")
	}
	if s := f.status(t); !s.Healthy || s.PreviousVersion == nil || s.PreviousVersion.Intact || len(s.Notes) == 0 {
		t.Errorf("status with a damaged previous version: %+v", s)
	}
}

// A new version that fails its smoke test is switched away from: the old one is in use again.
func TestUpgradeFailingSmokeSwitchesBack(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	first, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v2")
	f.daemon.RunOutput = "6.18.44-host\n"
	res, err := f.upgrade(nil)
	if err == nil || !strings.Contains(err.Error(), "switched back to version "+first.Version) || !res.SwitchedBack {
		t.Fatalf("err = %v, result %+v", err, res)
	}
	m := f.manifest(t)
	if m.Current != first.Version || m.Previous != "" || f.layout().Version != first.Version {
		t.Errorf("current %s previous %s", m.Current, m.Previous)
	}
	s := f.status(t)
	if !s.Healthy || len(s.OtherVersions) != 1 || s.OtherVersions[0].ID != res.Version {
		t.Errorf("status %+v", s)
	}
	// Fixed, the upgrade goes through with the version already built, and prunes nothing it keeps.
	f.daemon.RunOutput = guestKernel + "\n"
	builds := f.builds
	again, err := f.upgrade(nil)
	if err != nil || again.Version != res.Version || f.builds != builds || again.PreviousVersion != first.Version {
		t.Fatalf("second upgrade: %+v %v (builds %d)", again, err, f.builds-builds)
	}
	if _, err := f.uninstall(nil); err != nil || len(f.tree()) != 0 {
		t.Errorf("uninstall: %v, left %v", err, f.tree())
	}
}

// upgradeFixture is an install with a previous version, and new artifacts for a third one.
func upgradeFixture(t *testing.T) (*fixture, []string) {
	f := newFixture(t, []byte(origDaemonJSON))
	r1, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v2")
	r2, err := f.upgrade(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v3")
	return f, []string{r1.Version, r2.Version}
}

// Killed (SIGKILL) after any step of an upgrade, a rerun completes it, a rollback works from the
// state it left, and an uninstall leaves daemon.json byte-identical and nothing on disk.
func TestKilledUpgradeIsCompleted(t *testing.T) {
	for _, step := range UpgradeSteps {
		for _, then := range []string{"upgrade", "rollback", "uninstall"} {
			t.Run(step+"/then-"+then, func(t *testing.T) {
				f, ids := upgradeFixture(t)
				f.killAfter(t, "upgrade", step)
				switch then {
				case "upgrade":
					res, err := f.upgrade(nil)
					if err != nil {
						t.Fatalf("rerun: %v", err)
					}
					m := f.manifest(t)
					if m.Current != res.Version || m.Previous != ids[1] || len(m.Versions) != 2 || f.layout().Version != res.Version {
						t.Errorf("after the rerun: current %s previous %s versions %+v (ids %v)", m.Current, m.Previous, m.Versions, ids)
					}
					if got := f.versionsOnDisk(); len(got) != 2 || slices.Contains(got, ids[0]) {
						t.Errorf("versions on disk %v (first %s)", got, ids[0])
					}
					if s := f.status(t); !s.Healthy {
						t.Errorf("status %+v", s)
					}
					if res, err := f.upgrade(nil); err != nil || res.Changed {
						t.Errorf("a third run changed things: %+v %v", res, err)
					}
				case "rollback":
					before := f.manifest(t)
					if before.State != manifest.StateInstalled {
						if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "interrupted") {
							t.Errorf("rollback of an interrupted upgrade: %v", err)
						}
						return
					}
					rb, err := f.rollback(nil)
					if err != nil {
						t.Fatalf("rollback: %v", err)
					}
					if rb.To != before.Previous || f.layout().Version != before.Previous {
						t.Errorf("rolled back to %s, want %s", rb.To, before.Previous)
					}
				}
				if _, err := f.uninstall(nil); err != nil {
					t.Fatalf("uninstall: %v", err)
				}
				if got := string(f.file(f.daemonJSON())); got != origDaemonJSON {
					t.Errorf("daemon.json = %q", got)
				}
				if tree := f.tree(); len(tree) != 0 || f.loaded() {
					t.Errorf("left %v, loaded %v", tree, f.loaded())
				}
			})
		}
	}
}

// Killed after any step of a rollback, the install is consistent: current is one of the two
// versions, status is healthy, and rollback and uninstall still work.
func TestKilledRollbackIsConsistent(t *testing.T) {
	for _, step := range RollbackSteps {
		t.Run(step, func(t *testing.T) {
			f, ids := upgradeFixture(t)
			f.killAfter(t, "rollback", step)
			m := f.manifest(t)
			want := ids[0]
			if step == StepSwitchJournaled {
				want = ids[1]
			}
			if m.Current != want || f.layout().Version != want {
				t.Errorf("current %s (link %s), want %s", m.Current, f.layout().Version, want)
			}
			if s := f.status(t); !s.Healthy {
				t.Errorf("status %+v", s)
			}
			if _, err := f.rollback(nil); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if _, err := f.uninstall(nil); err != nil {
				t.Fatal(err)
			}
			if got := string(f.file(f.daemonJSON())); got != origDaemonJSON || len(f.tree()) != 0 {
				t.Errorf("daemon.json %q, left %v", got, f.tree())
			}
		})
	}
}

// flatInstall puts on the fixture what kata-deploy before versions installed: bin/ and share/
// directly under the prefix, a schema 1 manifest, the flat paths registered in daemon.json.
func (f *fixture) flatInstall(t testing.TB) layout.Layout {
	t.Helper()
	l := layout.Layout{Prefix: f.prefix()}
	m := manifest.New(f.prefix(), "kata", "0.1.0", f.deps().Now())
	m.Layout, m.SchemaVersion, m.State = manifest.LayoutFlat, 1, manifest.StateInstalled
	for _, d := range l.Dirs() {
		must(t, os.MkdirAll(d, 0o755))
		m.AddDir(d)
	}
	cfg, err := runtimeConfig(f.host, l, configSettings{StateDir: f.stateDir()})
	must(t, err)
	for path, data := range map[string][]byte{l.Shim(): []byte("flat shim"), l.Vmlinux(): []byte("flat vmlinux"),
		l.Initrd(): []byte("flat initrd"), l.ImageManifest(): []byte("{}"), l.Config(): cfg} {
		must(t, os.WriteFile(path, data, 0o644))
		m.PutFile(manifest.File{Path: path, SHA256: bytesSum(data), Size: int64(len(data)), Mode: 0o644})
	}
	m.Image = &manifest.Image{Key: "flat", KernelVersion: "5.10.0-flat-amd64"}
	edit, err := registration.PlanRegister(f.daemonJSON(), "kata", registration.Entry(l.Shim(), l.Config()), false, false)
	must(t, err)
	must(t, daemonjson.WriteFileAtomic(f.daemonJSON(), edit.New, edit.Info))
	m.DaemonJSON = &registration.State{Path: f.daemonJSON(), Created: !edit.Info.Exists, Changes: edit.Changes}
	must(t, m.Save(f.deps().Now()))
	must(t, f.daemon.Reload(context.Background()))
	return l
}

// An install in the flat layout uninstalls cleanly.
func TestFlatInstallUninstalls(t *testing.T) {
	f := newFixture(t, []byte(origDaemonJSON))
	f.flatInstall(t)
	s := f.status(t)
	if !s.Healthy || s.Layout != "flat" || s.GuestKernel != "5.10.0-flat-amd64" || !s.Registered {
		t.Errorf("status of a flat install: %+v", s)
	}
	if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "predates versions") {
		t.Errorf("rollback of a flat install: %v", err)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if got := string(f.file(f.daemonJSON())); got != origDaemonJSON || len(f.tree()) != 0 || f.loaded() {
		t.Errorf("daemon.json %q, left %v, loaded %v", got, f.tree(), f.loaded())
	}
}

// An upgrade moves a flat install into versions: the entry is re-pointed through current (one
// reload), the flat files go, and uninstall still restores daemon.json byte for byte.
func TestUpgradeMigratesFlatInstall(t *testing.T) {
	for _, content := range []string{origDaemonJSON, ""} {
		f := newFixture(t, []byte(content))
		if content == "" {
			must(t, os.Remove(f.daemonJSON()))
		}
		flat := f.flatInstall(t)
		reloads := f.daemon.State().Reloads
		res, err := f.upgrade(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Migrated || !res.Reloaded || res.PreviousVersion != "" || !slices.Contains(res.Pruned, "flat layout") || f.daemon.State().Reloads != reloads+1 {
			t.Errorf("result %+v", res)
		}
		l := f.layout()
		doc, err := daemonjson.Parse(f.file(f.daemonJSON()))
		must(t, err)
		if entry, _ := doc.Runtime("kata"); !strings.Contains(string(entry), l.EntryShim()) {
			t.Errorf("entry %s", entry)
		}
		for _, p := range []string{flat.Shim(), flat.Bin(), flat.Share()} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s is left after the migration", p)
			}
		}
		m := f.manifest(t)
		if m.SchemaVersion != manifest.SchemaVersion || !m.Versioned() || m.Image != nil || len(m.Files) != 5 || len(m.Dirs) != 7 {
			t.Errorf("manifest %+v", m)
		}
		if s := f.status(t); !s.Healthy || !s.Registered || s.Layout != manifest.LayoutVersioned {
			t.Errorf("status %+v", s)
		}
		if _, err := f.uninstall(nil); err != nil {
			t.Fatal(err)
		}
		if got := string(f.file(f.daemonJSON())); got != content || len(f.tree()) != 0 || f.loaded() {
			t.Errorf("daemon.json %q, left %v, loaded %v", got, f.tree(), f.loaded())
		}
	}
}

// A migration killed after any step is completed by a rerun, or undone by uninstall.
func TestKilledMigrationIsCompleted(t *testing.T) {
	steps := []string{StepPrefix, StepDirs, StepShim, StepImage, StepConfig, StepSwitchJournaled, StepSwitched,
		registration.CheckpointJournaled, registration.CheckpointWritten, StepRegistered, StepInstalled, StepSmoke, StepPruned}
	for _, step := range steps {
		for _, then := range []string{"upgrade", "uninstall"} {
			t.Run(step+"/then-"+then, func(t *testing.T) {
				f := newFixture(t, []byte(origDaemonJSON))
				f.flatInstall(t)
				f.killAfter(t, "upgrade", step)
				if _, err := daemonjson.Parse(f.file(f.daemonJSON())); err != nil {
					t.Fatalf("daemon.json invalid after the kill: %v", err)
				}
				if then == "upgrade" {
					if _, err := f.upgrade(nil); err != nil {
						t.Fatalf("rerun: %v", err)
					}
					if s := f.status(t); !s.Healthy || s.Layout != manifest.LayoutVersioned {
						t.Fatalf("status %+v", s)
					}
				}
				if _, err := f.uninstall(nil); err != nil {
					t.Fatal(err)
				}
				if got := string(f.file(f.daemonJSON())); got != origDaemonJSON || len(f.tree()) != 0 || f.loaded() {
					t.Errorf("daemon.json %q, left %v, loaded %v", got, f.tree(), f.loaded())
				}
			})
		}
	}
}

// A new version with the same kernel and agent (a new shim, say) reuses the guest image of the
// version in use instead of building it again; so does a migration from the flat layout.
func TestNewVersionReusesTheGuestImage(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	old := f.layout()
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.ShimName), []byte("shim v2"), 0o755))
	dry, err := f.upgrade(func(o *UpgradeOptions) { o.DryRun = true })
	if err != nil || !slices.ContainsFunc(dry.Actions, func(a Action) bool { return a.Op == "copy-image" && strings.Contains(a.Detail, old.ImageDir()) }) {
		t.Errorf("dry run: %+v %v", dry.Actions, err)
	}
	res, err := f.upgrade(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := f.layout()
	if f.builds != 1 || l.Version == old.Version || res.GuestKernel != guestKernel || !bytes.Equal(f.file(l.Initrd()), f.file(old.Initrd())) {
		t.Errorf("builds %d, version %s (was %s), result %+v", f.builds, l.Version, old.Version, res)
	}
	// A damaged source is not reused: the image is built.
	must(t, os.WriteFile(l.Initrd(), []byte("damaged"), 0o644))
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.ShimName), []byte("shim v3"), 0o755))
	must(t, os.WriteFile(old.Initrd(), []byte("damaged too"), 0o644))
	if _, err := f.upgrade(nil); err != nil {
		t.Fatal(err)
	}
	if f.builds != 2 {
		t.Errorf("a damaged image was reused (builds %d)", f.builds)
	}
}

// Upgrade keeps the runtime name and default of the install, whatever the options say.
func TestUpgradeKeepsRuntimeName(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(func(o *InstallOptions) { o.RuntimeName, o.SetDefaultRuntime = "kata2", true }); err != nil {
		t.Fatal(err)
	}
	f.newAgent(t, "agent v2")
	res, err := f.upgrade(nil)
	if err != nil || res.RuntimeName != "kata2" || !res.Switched {
		t.Fatalf("upgrade: %+v %v", res, err)
	}
	if f.daemon.State().Default != "kata2" {
		t.Errorf("default %q", f.daemon.State().Default)
	}
}
