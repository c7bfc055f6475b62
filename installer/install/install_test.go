package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

const origDaemonJSON = "{\n  \"debug\": true,\n  \"max-concurrent-downloads\": 9007199254740993\n}\n"

func TestInstallThenUninstall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"existing daemon.json", []byte(origDaemonJSON)},
		{"no daemon.json", nil},
		{"empty object", []byte("{}")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.content)
			res, err := f.install(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || !res.Reloaded || res.GuestKernel != guestKernel || res.Smoke == nil || res.Smoke.GuestKernel != guestKernel {
				t.Errorf("result %+v smoke %+v", res, res.Smoke)
			}
			l := f.layout()
			if l.Version != res.Version || res.PreviousVersion != "" || !res.Switched {
				t.Errorf("version %q (result %q), previous %q, switched %v", l.Version, res.Version, res.PreviousVersion, res.Switched)
			}
			if target, err := os.Readlink(l.CurrentLink()); err != nil || target != "versions/"+l.Version {
				t.Errorf("current -> %q, %v", target, err)
			}
			for _, p := range []string{l.Shim(), l.Vmlinux(), l.Initrd(), l.ImageManifest(), l.Config(), manifest.Path(f.prefix()), l.EntryShim(), l.EntryConfig()} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("missing %s", p)
				}
			}
			if fi, _ := os.Stat(l.Shim()); fi == nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("shim mode %v", fi)
			}
			if _, err := os.Stat(l.Staging()); !os.IsNotExist(err) {
				t.Error("the staging directory is left")
			}
			m, err := manifest.Load(f.prefix())
			if err != nil {
				t.Fatal(err)
			}
			v := m.FindVersion(m.Current)
			if m.State != manifest.StateInstalled || len(m.Files) != 5 || len(m.Dirs) != 7 || len(m.Links) != 1 || v == nil || !v.Ready ||
				v.Image.KernelVersion != guestKernel || m.Previous != "" || len(m.Versions) != 1 || m.SchemaVersion != manifest.SchemaVersion {
				t.Errorf("manifest state %s files %d dirs %d links %d versions %+v", m.State, len(m.Files), len(m.Dirs), len(m.Links), m.Versions)
			}
			for _, rec := range m.Files {
				if sum, _, _ := fileSum(rec.Path); sum != rec.SHA256 || rec.PendingSHA256 != "" {
					t.Errorf("%s: sha %s, recorded %s (pending %q)", rec.Path, sum, rec.SHA256, rec.PendingSHA256)
				}
			}
			if !f.loaded() {
				t.Error("the daemon does not list the runtime")
			}
			doc, err := daemonjson.Parse(f.file(f.daemonJSON()))
			if err != nil {
				t.Fatal(err)
			}
			entry, ok := doc.Runtime("kata")
			if !ok || !strings.Contains(string(entry), l.EntryShim()) || !strings.Contains(string(entry), l.EntryConfig()) {
				t.Errorf("entry %s", entry)
			}
			cfg, err := config.Load(l.Config())
			if err != nil {
				t.Fatalf("the runtime configuration does not load: %v", err)
			}
			if cfg.Hypervisor.Accelerator != "tcg" || cfg.Hypervisor.Kernel != l.Vmlinux() || cfg.Hypervisor.Path != f.host.QEMU.Path {
				t.Errorf("config %+v", cfg.Hypervisor)
			}

			ures, err := f.uninstall(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.file(f.daemonJSON()); !bytes.Equal(got, tc.content) {
				t.Errorf("daemon.json after uninstall = %q, want %q", got, tc.content)
			}
			if tc.content == nil {
				if _, err := os.Stat(f.daemonJSON()); !os.IsNotExist(err) {
					t.Error("daemon.json that install created is still there")
				}
			}
			if tree := f.tree(); len(tree) != 0 {
				t.Errorf("left under the prefix's parent: %v", tree)
			}
			if f.loaded() || len(ures.Kept) != 0 || len(ures.Warnings) != 0 {
				t.Errorf("loaded %v, result %+v", f.loaded(), ures)
			}
		})
	}
}

func TestSecondInstallChangesNothing(t *testing.T) {
	f := newFixture(t, []byte(origDaemonJSON))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	mBefore, djBefore := f.file(manifest.Path(f.prefix())), f.file(f.daemonJSON())
	reloads, builds := f.daemon.State().Reloads, f.builds
	start := time.Now()
	res, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("second install took %s", d)
	}
	if res.Changed || res.Reloaded || res.Smoke != nil || len(res.Actions) != 0 {
		t.Errorf("second install: %+v", res)
	}
	if f.builds != builds || f.daemon.State().Reloads != reloads {
		t.Errorf("built %d times, reloaded %d times", f.builds-builds, f.daemon.State().Reloads-reloads)
	}
	if !bytes.Equal(f.file(manifest.Path(f.prefix())), mBefore) || !bytes.Equal(f.file(f.daemonJSON()), djBefore) {
		t.Error("the manifest or daemon.json changed")
	}
	// Without --kernel, the package the first install used is reused: no fetch, no change.
	res, err = f.install(func(o *InstallOptions) { o.Kernel = "" })
	if err != nil || res.Changed || f.fetches != 0 {
		t.Errorf("without --kernel: changed %v, err %v, fetched %d times", res.Changed, err, f.fetches)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFixture(t, []byte(origDaemonJSON))
	res, err := f.install(func(o *InstallOptions) { o.DryRun, o.Kernel = true, "" })
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, a := range res.Actions {
		ops = append(ops, a.Op)
	}
	for _, want := range []string{"mkdir", "create", "fetch-kernel", "build-image", "edit-daemon-json", "reload-docker", "smoke-test"} {
		if !slices.Contains(ops, want) {
			t.Errorf("plan lacks %q: %v", want, ops)
		}
	}
	if !strings.Contains(res.DaemonJSONDiff, `+    "kata": {`) || !strings.HasPrefix(res.DaemonJSONDiff, "--- a"+f.daemonJSON()) {
		t.Errorf("diff:\n%s", res.DaemonJSONDiff)
	}
	if tree := f.tree(); len(tree) != 0 || f.builds != 0 || f.daemon.State().Reloads != 1 {
		t.Errorf("dry run changed things: tree %v builds %d reloads %d", tree, f.builds, f.daemon.State().Reloads)
	}
	if got := string(f.file(f.daemonJSON())); got != origDaemonJSON {
		t.Errorf("daemon.json changed: %q", got)
	}
	for _, p := range []string{filepath.Join(f.dir, "kata-deploy.lock"), filepath.Join(f.dir, "cache")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("dry run created %s", p)
		}
	}
	// Installed and up to date: the plan is empty.
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	res, err = f.install(func(o *InstallOptions) { o.DryRun = true })
	if err != nil || len(res.Actions) != 0 || res.DaemonJSONDiff != "" {
		t.Errorf("dry run after install: %+v, %v", res, err)
	}
	ures, err := f.uninstall(func(o *UninstallOptions) { o.DryRun = true })
	if err != nil || !strings.Contains(ures.DaemonJSONDiff, `-    "kata": {`) || len(ures.Removed) != 13 {
		t.Errorf("uninstall dry run: %+v, %v", ures, err)
	}
	if _, err := manifest.Load(f.prefix()); err != nil {
		t.Errorf("uninstall dry run removed the manifest: %v", err)
	}
}

func TestInvalidDaemonJSONChangesNothing(t *testing.T) {
	bad := "{\n  \"debug\": true,\n  \"runtimes\": {,}\n}\n"
	f := newFixture(t, []byte("{}"))
	must(t, os.WriteFile(f.daemonJSON(), []byte(bad), 0o644))
	_, err := f.install(nil)
	var se *daemonjson.SyntaxError
	if !errors.As(err, &se) || se.Line != 3 || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v, want a syntax error on line 3", err)
	}
	if tree := f.tree(); len(tree) != 0 || string(f.file(f.daemonJSON())) != bad || f.builds != 0 {
		t.Errorf("tree %v, builds %d", tree, f.builds)
	}
}

func TestPreflightFailureStops(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	f.host.Report = check.Report{Sections: []check.Section{{Name: "Hypervisor", Lines: []check.Line{
		{ID: "hypervisor.qemu", Name: "QEMU", Status: check.Fail, Value: "not found", Remedy: "apt-get install qemu-system-x86"}}}}}
	_, err := f.install(nil)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("err = %v", err)
	}
	if tree := f.tree(); len(tree) != 0 {
		t.Errorf("tree %v", tree)
	}
}

// New inputs make a new version beside the old one; current switches to it, the old one is kept
// as the previous version, and nothing of either is left after uninstall.
func TestNewInputsMakeANewVersion(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	first, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	old := f.layout()
	oldInitrd := f.file(old.Initrd())
	djBefore, reloads := f.file(f.daemonJSON()), f.daemon.State().Reloads
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.AgentName), []byte("agent v2"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.ShimName), []byte("shim v2"), 0o755))
	res, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	l := f.layout()
	if !res.Changed || f.builds != 2 || l.Version == old.Version || res.Version != l.Version || res.PreviousVersion != old.Version {
		t.Errorf("changed %v builds %d version %s (was %s) result %+v", res.Changed, f.builds, l.Version, old.Version, res)
	}
	if bytes.Equal(f.file(l.Initrd()), oldInitrd) || string(f.file(l.Shim())) != "shim v2" || string(f.file(l.EntryShim())) != "shim v2" {
		t.Error("the new version does not have the new artifacts")
	}
	if !bytes.Equal(f.file(old.Initrd()), oldInitrd) || string(f.file(old.Shim())) == "shim v2" {
		t.Error("the old version was changed")
	}
	if res.Reloaded || f.daemon.State().Reloads != reloads || !bytes.Equal(f.file(f.daemonJSON()), djBefore) {
		t.Error("a new version changed daemon.json or reloaded Docker")
	}
	m, _ := manifest.Load(f.prefix())
	if m.Current != l.Version || m.Previous != old.Version || len(m.Versions) != 2 || len(m.Files) != 10 {
		t.Errorf("manifest current %s previous %s versions %d files %d", m.Current, m.Previous, len(m.Versions), len(m.Files))
	}
	_ = first
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if tree := f.tree(); len(tree) != 0 || string(f.file(f.daemonJSON())) != "{}" {
		t.Errorf("tree %v", tree)
	}
}

// A file the user changed is kept by install and by uninstall, and reported.
func TestModifiedFileIsKept(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	l := f.layout()
	mine := append(f.file(l.Config()), []byte("# my tuning\n")...)
	must(t, os.WriteFile(l.Config(), mine, 0o644))
	res, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.file(l.Config()), mine) || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "--force") {
		t.Errorf("warnings %q", res.Warnings)
	}
	ures, err := f.uninstall(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ures.Kept, []string{l.Config()}) || !bytes.Equal(f.file(l.Config()), mine) {
		t.Errorf("kept %v", ures.Kept)
	}
	if _, err := os.Stat(l.Shim()); !os.IsNotExist(err) {
		t.Error("the unmodified shim was not removed")
	}
	if string(f.file(f.daemonJSON())) != "{}" {
		t.Errorf("daemon.json %q", f.file(f.daemonJSON()))
	}
}

// A file kata-deploy does not own is refused; with --force it is kept aside and restored.
func TestForeignFile(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	dry, err := f.install(func(o *InstallOptions) { o.DryRun = true })
	if err != nil {
		t.Fatal(err)
	}
	l := layout.Layout{Prefix: f.prefix(), Version: dry.Version}
	must(t, os.MkdirAll(l.Bin(), 0o755))
	must(t, os.WriteFile(l.Shim(), []byte("someone else's shim"), 0o700))
	if _, err := f.install(nil); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(manifest.Path(f.prefix())); !os.IsNotExist(err) || string(f.file(f.daemonJSON())) != "{}" {
		t.Fatal("a refused install changed something")
	}
	if _, err := f.install(func(o *InstallOptions) { o.Replace = ReplaceAll }); err != nil {
		t.Fatal(err)
	}
	ures, err := f.uninstall(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.file(l.Shim())) != "someone else's shim" || !slices.Equal(ures.Restored, []string{l.Shim()}) {
		t.Errorf("shim %q restored %v", f.file(l.Shim()), ures.Restored)
	}
	if fi, err := os.Stat(l.Shim()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("restored shim: %v %v", fi, err)
	}
	tree := f.tree()
	v := "/kata-deploy/versions/" + l.Version
	if !slices.Equal(tree, []string{"/kata-deploy", "/kata-deploy/versions", v, v + "/bin", v + "/bin/" + layout.ShimName}) {
		t.Errorf("left: %v", tree)
	}
}

// A current that kata-deploy did not make is refused.
func TestForeignCurrentLink(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	must(t, os.MkdirAll(f.prefix(), 0o755))
	must(t, os.Symlink("/somewhere", filepath.Join(f.prefix(), "current")))
	if _, err := f.install(nil); err == nil || !strings.Contains(err.Error(), "did not create it") {
		t.Fatalf("err = %v", err)
	}
	if string(f.file(f.daemonJSON())) != "{}" || f.builds != 0 {
		t.Error("a refused install changed something")
	}
}

func TestUninstallRefusesWhileContainersRun(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	f.daemon.Containers = []dockerapi.Container{{ID: "0123456789ab", Name: "web", Image: "busybox"}}
	res, err := f.uninstall(nil)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "web (0123456789ab") || len(res.Containers) != 1 {
		t.Fatalf("err = %v", err)
	}
	if !f.loaded() {
		t.Fatal("a refused uninstall unregistered the runtime")
	}
	if _, err := f.uninstall(func(o *UninstallOptions) { o.IgnoreInUse = true }); err != nil {
		t.Fatal(err)
	}
	if f.loaded() || len(f.tree()) != 0 {
		t.Errorf("loaded %v tree %v", f.loaded(), f.tree())
	}
}

func TestReadOnlyDaemonJSONPrintsStanza(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	f.loc.ReadOnly, f.loc.Why = true, "the file is in the read-only Nix store"
	res, err := f.install(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stanza, `"runtimeType": "`+f.layout().EntryShim()+`"`) || res.DaemonJSON != "" {
		t.Errorf("stanza %q daemonJSON %q", res.Stanza, res.DaemonJSON)
	}
	if string(f.file(f.daemonJSON())) != "{}" || f.daemon.State().Reloads != 1 {
		t.Error("a read-only daemon.json was written, or Docker reloaded")
	}
	if _, err := f.uninstall(nil); err != nil || len(f.tree()) != 0 {
		t.Errorf("uninstall: %v, left %v", err, f.tree())
	}
}

func TestRegistrationFailureRollsBack(t *testing.T) {
	f := newFixture(t, []byte(origDaemonJSON))
	f.daemon.HideRuntime = "kata"
	_, err := f.install(nil)
	if err == nil || !strings.Contains(err.Error(), "restored") {
		t.Fatalf("err = %v", err)
	}
	if string(f.file(f.daemonJSON())) != origDaemonJSON {
		t.Errorf("daemon.json not restored: %q", f.file(f.daemonJSON()))
	}
	m, err := manifest.Load(f.prefix())
	if err != nil || m.State != manifest.StateInstalling || m.DaemonJSON.Registered() {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	// The files stay; uninstall removes them, or a rerun (daemon fixed) completes the install.
	f.daemon.HideRuntime = ""
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if string(f.file(f.daemonJSON())) != origDaemonJSON || len(f.tree()) != 0 {
		t.Errorf("daemon.json %q, left %v", f.file(f.daemonJSON()), f.tree())
	}
}

func TestSmoke(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*fixture, *InstallOptions)
		wantErr string
		skipped string
		warn    string
	}{
		{"skip flag", func(_ *fixture, o *InstallOptions) { o.SkipSmoke = true }, "", "--skip-smoke", ""},
		{"no busybox", func(f *fixture, _ *InstallOptions) { f.daemon.Images = nil }, "", "no image to run", "--smoke-image"},
		{"named image absent", func(_ *fixture, o *InstallOptions) { o.SmokeImage = "alpine" }, "not present locally", "no image to run", ""},
		{"host kernel printed", func(f *fixture, _ *InstallOptions) { f.daemon.RunOutput = "6.18.44-host\n" }, "did not run in a VM", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			o := f.options()
			tt.setup(f, &o)
			res, err := Install(context.Background(), o, f.deps())
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if res.Smoke == nil || res.Smoke.Skipped != tt.skipped {
				t.Errorf("smoke %+v", res.Smoke)
			}
			if tt.warn != "" && (len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], tt.warn)) {
				t.Errorf("warnings %q", res.Warnings)
			}
			if m, _ := manifest.Load(f.prefix()); m == nil || m.State != manifest.StateInstalled {
				t.Error("a smoke failure must leave the install in place")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	type validator interface{ Validate() error }
	tests := []struct {
		o    validator
		want string
	}{
		{InstallOptions{Common: Common{Prefix: "relative"}}, "--prefix"},
		{InstallOptions{Common: Common{Prefix: "/"}}, "--prefix"},
		{InstallOptions{Common: Common{Prefix: "/opt/../x"}}, "--prefix"},
		{InstallOptions{RuntimeName: "runc"}, "reserved"},
		{InstallOptions{RuntimeName: "a/b"}, "--runtime-name"},
		{InstallOptions{ArtifactOptions: ArtifactOptions{Accelerator: "hvf"}}, "--accelerator"},
		{InstallOptions{ArtifactOptions: ArtifactOptions{Kernel: "/boot/vmlinuz"}}, ".deb"},
		{InstallOptions{ArtifactOptions: ArtifactOptions{DaemonJSON: "daemon.json"}}, "absolute"},
		{InstallOptions{Engine: "podman"}, "--engine"},
		{UpgradeOptions{ArtifactOptions: ArtifactOptions{Kernel: "/boot/vmlinuz"}}, ".deb"},
		{UpgradeOptions{Common: Common{Prefix: "relative"}}, "--prefix"},
		{RollbackOptions{Common: Common{Prefix: "/"}}, "--prefix"},
		{UninstallOptions{Common: Common{Prefix: "relative"}}, "--prefix"},
		{UninstallOptions{Common: Common{ContainerdAddress: "run/containerd.sock"}}, "--containerd-address"},
		{StatusOptions{Prefix: "relative"}, "--prefix"},
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%T %+v: err = %v, want %q", tt.o, tt.o, err, tt.want)
		}
	}
	for _, o := range []validator{InstallOptions{}, UpgradeOptions{}, RollbackOptions{}, UninstallOptions{}, StatusOptions{}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%T defaults: %v", o, err)
		}
	}
}

func TestRuntimeNameMismatch(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	_, err := f.install(func(o *InstallOptions) { o.RuntimeName = "other" })
	if err == nil || !strings.Contains(err.Error(), `runtime "kata"`) {
		t.Errorf("err = %v", err)
	}
}

func TestDefaultRuntime(t *testing.T) {
	f := newFixture(t, []byte("{}\n"))
	if _, err := f.install(func(o *InstallOptions) { o.SetDefaultRuntime = true }); err != nil {
		t.Fatal(err)
	}
	if f.daemon.State().Default != "kata" {
		t.Errorf("default %q", f.daemon.State().Default)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if f.daemon.State().Default != "runc" || string(f.file(f.daemonJSON())) != "{}\n" {
		t.Errorf("default %q, file %q", f.daemon.State().Default, f.file(f.daemonJSON()))
	}
}

func TestLockStopsASecondInstaller(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	l, err := manifest.Acquire(f.options().LockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := f.install(nil); err == nil || !strings.Contains(err.Error(), "another kata-deploy") {
		t.Fatalf("install = %v", err)
	}
	if _, err := f.uninstall(nil); err == nil || !strings.Contains(err.Error(), "another kata-deploy") {
		t.Fatalf("uninstall = %v", err)
	}
	if len(f.tree()) != 0 {
		t.Error("a locked-out install changed things")
	}
}

func TestStatus(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	s, err := GetStatus(context.Background(), f.statusOptions(), f.deps())
	if err != nil || s.Installed || s.Healthy || s.HostAccelerator == "" {
		t.Fatalf("before install: %+v, %v", s, err)
	}
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	s, err = GetStatus(context.Background(), f.statusOptions(), f.deps())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Installed || !s.Healthy || !s.Registered || !s.Docker.SeesRuntime || s.GuestKernel != guestKernel ||
		s.Accelerator != "tcg" || len(s.Artifacts) != 5 || len(s.Problems) != 0 {
		t.Errorf("after install: %+v", s)
	}
	l := f.layout()
	must(t, os.Remove(l.Initrd()))
	f.daemon.Containers = []dockerapi.Container{{ID: "abc", Name: "vm1"}}
	s, _ = GetStatus(context.Background(), f.statusOptions(), f.deps())
	if s.Healthy || len(s.Containers) != 1 || !strings.Contains(strings.Join(s.Problems, "\n"), "initrd.img is missing") {
		t.Errorf("broken install: %+v", s)
	}
}

// Killed (SIGKILL) after any step, a rerun of install completes the install, and an uninstall
// from there leaves daemon.json byte-identical and nothing on disk.
func TestKilledInstallIsCompleted(t *testing.T) {
	for _, step := range InstallSteps {
		for _, then := range []string{"install", "uninstall"} {
			t.Run(step+"/then-"+then, func(t *testing.T) {
				f := newFixture(t, []byte(origDaemonJSON))
				f.killAfter(t, "install", step)
				if _, err := daemonjson.Parse(f.file(f.daemonJSON())); err != nil {
					t.Fatalf("daemon.json invalid after the kill: %v", err)
				}
				if then == "install" {
					if _, err := f.install(nil); err != nil {
						t.Fatalf("rerun: %v", err)
					}
					s, err := GetStatus(context.Background(), f.statusOptions(), f.deps())
					if err != nil || !s.Healthy {
						t.Fatalf("after the rerun: %+v %v", s, err)
					}
					if res, err := f.install(nil); err != nil || res.Changed {
						t.Fatalf("a third install changed things: %+v %v", res, err)
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

// Killed after any step of an uninstall, a rerun finishes it.
func TestKilledUninstallIsCompleted(t *testing.T) {
	for _, content := range []string{origDaemonJSON, "{\"runtimes\": {\"crun\": {\"path\": \"/usr/bin/crun\"}}}"} {
		for _, step := range UninstallSteps {
			unload := !strings.Contains(content, "runtimes")
			if !unload && strings.Contains(step, "unload") {
				continue
			}
			t.Run(step, func(t *testing.T) {
				f := newFixture(t, []byte(content))
				if _, err := f.install(nil); err != nil {
					t.Fatal(err)
				}
				f.killAfter(t, "uninstall", step)
				if _, err := daemonjson.Parse(f.file(f.daemonJSON())); err != nil {
					t.Fatalf("daemon.json invalid after the kill: %v", err)
				}
				if _, err := f.uninstall(nil); err != nil {
					t.Fatalf("rerun: %v", err)
				}
				if got := string(f.file(f.daemonJSON())); got != content {
					t.Errorf("daemon.json = %q", got)
				}
				if tree := f.tree(); len(tree) != 0 || f.loaded() {
					t.Errorf("left %v, loaded %v", tree, f.loaded())
				}
			})
		}
	}
}

// daemon.json edited while the image builds: the edit is planned again and keeps the change.
func TestDaemonJSONEditedDuringBuild(t *testing.T) {
	f := newFixture(t, []byte("{}\n"))
	d := f.deps()
	build := d.BuildImage
	d.BuildImage = func(ctx context.Context, o guestimage.Options) (*guestimage.Manifest, error) {
		must(t, os.WriteFile(f.daemonJSON(), []byte("{\"log-level\": \"warn\"}\n"), 0o644))
		return build(ctx, o)
	}
	if _, err := Install(context.Background(), f.options(), d); err != nil {
		t.Fatal(err)
	}
	if got := string(f.file(f.daemonJSON())); !strings.Contains(got, `"log-level": "warn"`) || !f.loaded() {
		t.Errorf("daemon.json %q, loaded %v", got, f.loaded())
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if got := string(f.file(f.daemonJSON())); got != "{\"log-level\": \"warn\"}\n" {
		t.Errorf("after uninstall: %q", got)
	}
}

// An identical entry that was there before install is not install's: status counts it as
// registered, and uninstall leaves it.
func TestIdenticalEntryBeforeInstallIsLeft(t *testing.T) {
	f := newFixture(t, nil)
	l := layout.Layout{Prefix: f.prefix(), Version: "any"}
	before := `{"runtimes": {"kata": {"runtimeType": "` + l.EntryShim() + `", "options": {"ConfigPath": "` + l.EntryConfig() + `"}}}}`
	must(t, os.WriteFile(f.daemonJSON(), []byte(before), 0o644))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	s, err := GetStatus(context.Background(), f.statusOptions(), f.deps())
	if err != nil || !s.Registered || !s.Healthy {
		t.Errorf("status %+v, %v", s, err)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if got := string(f.file(f.daemonJSON())); got != before {
		t.Errorf("daemon.json %q", got)
	}
}
