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
	"github.com/kata-deploy/kata-deploy/installer/upstream"
	"github.com/kata-deploy/kata-deploy/installer/upstream/upstreamtest"
)

func (f *fixture) kataDir() string { return filepath.Join(f.dir, "opt", "kata") }

// releaseTarball writes a synthetic release into the fixture.
func (f *fixture) releaseTarball(t testing.TB, name, comp string, items []upstreamtest.Item) string {
	t.Helper()
	p, err := upstreamtest.Write(f.dir, name, comp, items)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fromOpts installs the release instead of the built-in runtime.
func (f *fixture) fromOpts(tarball string, more ...func(*InstallOptions)) func(*InstallOptions) {
	return func(o *InstallOptions) {
		o.From, o.KataDir, o.ArtifactsDir, o.Kernel = tarball, f.kataDir(), "", ""
		for _, m := range more {
			m(o)
		}
	}
}

func TestUpstreamInstallUninstall(t *testing.T) {
	for _, tc := range []struct{ name, comp string }{
		{"kata-static-3.18.0-amd64.tar.xz", "xz"},
		{"kata-static-3.18.0-amd64.tar.zst", "zst"},
		{"kata-go-static-4.1.0-amd64.tar.zst", "zst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte(origDaemonJSON))
			tb := f.releaseTarball(t, tc.name, tc.comp, upstreamtest.Release("3.18.0"))
			res, err := f.install(f.fromOpts(tb))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || !res.Reloaded || res.Smoke == nil || res.Smoke.Error != "" || res.Version != "" {
				t.Errorf("result %+v smoke %+v", res, res.Smoke)
			}
			shim, cfg := filepath.Join(f.kataDir(), upstream.ShimPath), filepath.Join(f.kataDir(), upstream.ConfigPath)
			if fi, err := os.Stat(shim); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("shim: %v %v", fi, err)
			}
			doc, err := daemonjson.Parse(f.file(f.daemonJSON()))
			must(t, err)
			if entry, _ := doc.Runtime("kata"); !strings.Contains(string(entry), `"`+shim+`"`) || !strings.Contains(string(entry), `"`+cfg+`"`) {
				t.Errorf("entry %s", entry)
			}
			m := f.manifest(t)
			if m.Source != manifest.SourceUpstream || m.Upstream == nil || !m.Upstream.Placed || m.Upstream.Version != "3.18.0" || len(m.Links) != 2 || len(m.Files) != 4 {
				t.Errorf("manifest %+v upstream %+v", m, m.Upstream)
			}
			if _, err := os.Stat(filepath.Join(f.dir, "opt", ".kata.kata-deploy-staging")); !os.IsNotExist(err) {
				t.Error("the staging directory is left")
			}
			s := f.status(t)
			if !s.Healthy || s.Layout != "upstream" || s.Upstream == nil || s.Upstream.Version != "3.18.0" || !s.Registered {
				t.Errorf("status %+v %v", s, s.Problems)
			}
			if again, err := f.install(f.fromOpts(tb)); err != nil || again.Changed {
				t.Errorf("second install: %+v %v", again, err)
			}
			if _, err := f.uninstall(nil); err != nil {
				t.Fatal(err)
			}
			if got := string(f.file(f.daemonJSON())); got != origDaemonJSON {
				t.Errorf("daemon.json = %q", got)
			}
			if _, err := os.Lstat(f.kataDir()); !os.IsNotExist(err) {
				t.Error("the release is left")
			}
			if tree := f.tree(); len(tree) != 0 {
				t.Errorf("left %v", tree)
			}
		})
	}
}

// A /opt/kata that is not kata-deploy's is refused; with --force it is moved aside and put back
// by uninstall, untouched. An empty one is moved aside without --force.
func TestUpstreamExistingDir(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	tb := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.xz", "xz", upstreamtest.Release("3.18.0"))
	mine := filepath.Join(f.kataDir(), "bin", "containerd-shim-kata-v2")
	must(t, os.MkdirAll(filepath.Dir(mine), 0o755))
	must(t, os.WriteFile(mine, []byte("installed by hand"), 0o700))
	if _, err := f.install(f.fromOpts(tb)); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if string(f.file(mine)) != "installed by hand" || string(f.file(f.daemonJSON())) != "{}" {
		t.Fatal("a refused install changed something")
	}
	if _, err := os.Stat(manifest.Path(f.prefix())); !os.IsNotExist(err) {
		t.Error("a refused install left a manifest")
	}
	res, err := f.install(f.fromOpts(tb, func(o *InstallOptions) { o.Replace = ReplaceAll }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res.Actions, func(a Action) bool { return a.Op == "move-aside" }) || string(f.file(mine)) == "installed by hand" {
		t.Errorf("actions %+v", res.Actions)
	}
	ures, err := f.uninstall(nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.file(mine)) != "installed by hand" || !slices.Contains(ures.Restored, f.kataDir()) {
		t.Errorf("the hand-installed release was not put back: %q, %+v", f.file(mine), ures)
	}
	if fi, err := os.Stat(mine); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("put back with mode %v %v", fi, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(f.kataDir()))
	if len(entries) != 1 {
		t.Errorf("beside /opt/kata: %v", entries)
	}

	// An empty directory.
	must(t, os.RemoveAll(f.kataDir()))
	must(t, os.Mkdir(f.kataDir(), 0o750))
	if _, err := f.install(f.fromOpts(tb)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f.kataDir()); err != nil || !fi.IsDir() || !isEmptyDir(f.kataDir()) || fi.Mode().Perm() != 0o750 {
		t.Errorf("the empty directory was not put back: %v %v", fi, err)
	}
}

// A malicious release is refused and leaves nothing behind: no manifest, no staging, no files.
func TestUpstreamMaliciousReleaseLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra upstreamtest.Item
		want  string
	}{
		{"dot-dot", upstreamtest.File("./opt/kata/../../etc/evil", "x"), `".." component`},
		{"absolute", upstreamtest.File("/etc/evil", "x"), "absolute"},
		{"symlink escape", upstreamtest.Symlink("./opt/kata/bin/etc", "../../../etc"), "outside /opt/kata"},
		{"hardlink escape", upstreamtest.Hardlink("./opt/kata/bin/passwd", "/etc/passwd"), "hard link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			tb := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.zst", "zst", append(upstreamtest.Release("3.18.0"), tc.extra))
			_, err := f.install(f.fromOpts(tb))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was installed") {
				t.Fatalf("err = %v", err)
			}
			if tree := f.tree(); len(tree) != 0 {
				t.Errorf("left under /opt: %v", tree)
			}
			if string(f.file(f.daemonJSON())) != "{}" || f.daemon.State().Reloads != 1 {
				t.Error("daemon.json changed or Docker reloaded")
			}
		})
	}
}

func TestUpstreamRefusals(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	tb := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.xz", "xz", upstreamtest.Release("3.18.0"))
	other := f.releaseTarball(t, "kata-static-3.19.0-amd64.tar.xz", "xz", upstreamtest.Release("3.19.0"))
	arm := f.releaseTarball(t, "kata-static-3.18.0-arm64.tar.xz", "xz", upstreamtest.Release("3.18.0"))
	renamed := f.releaseTarball(t, "kata.tar.xz", "xz", upstreamtest.Release("3.18.0"))
	for _, tc := range []struct {
		path, want string
	}{{arm, "download the amd64"}, {renamed, "not named like"}} {
		if _, err := f.install(f.fromOpts(tc.path)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.path, err)
		}
	}
	if err := (InstallOptions{From: tb, ArtifactOptions: ArtifactOptions{Kernel: "/k.deb"}}).Validate(); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Errorf("--from with --kernel: %v", err)
	}
	if _, err := f.install(f.fromOpts(tb)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.install(f.fromOpts(other)); err == nil || !strings.Contains(err.Error(), "another release") {
		t.Errorf("a second release: %v", err)
	}
	if _, err := f.install(nil); err == nil || !strings.Contains(err.Error(), "upstream Kata release") {
		t.Errorf("the built-in runtime over a release: %v", err)
	}
	if _, err := f.upgrade(func(o *UpgradeOptions) { o.ArtifactsDir, o.Kernel = "", "" }); err == nil || !strings.Contains(err.Error(), "not upgraded in place") {
		t.Errorf("upgrade of a release: %v", err)
	}
	if _, err := f.rollback(nil); err == nil || !strings.Contains(err.Error(), "no versions") {
		t.Errorf("rollback of a release: %v", err)
	}
}

func TestUpstreamDryRunAndContainerd(t *testing.T) {
	f := newFixture(t, nil)
	f.withContainerd(t, []byte("version = 3\n"))
	tb := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.xz", "xz", upstreamtest.Release("3.18.0"))
	dry, err := f.install(f.fromOpts(tb, ctrdOpts, func(o *InstallOptions) { o.DryRun = true }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(dry.Actions, func(a Action) bool { return a.Op == "extract" && a.Target == f.kataDir() }) || len(f.tree()) != 0 {
		t.Errorf("dry run: %+v, tree %v", dry.Actions, f.tree())
	}
	if _, err := f.install(f.fromOpts(tb, ctrdOpts)); err != nil {
		t.Fatal(err)
	}
	drop := string(f.file(f.dropIn()))
	if !strings.Contains(drop, filepath.Join(f.kataDir(), upstream.ShimPath)) || !strings.Contains(drop, filepath.Join(f.kataDir(), upstream.ConfigPath)) {
		t.Errorf("drop-in:\n%s", drop)
	}
	if s := f.status(t); !s.Healthy || s.Layout != "upstream" || !s.Containerd.SeesRuntime {
		t.Errorf("status %+v %v", s.Containerd, s.Problems)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	f.checkContainerdRestored(t, []byte("version = 3\n"))
}

// Killed after any step, an install --from is completed by a rerun or undone by uninstall; with a
// directory moved aside (--force), uninstall puts it back intact.
func TestKilledUpstreamInstallIsCompleted(t *testing.T) {
	steps := append(slices.Clone(UpstreamInstallSteps), StepUpstreamAside)
	for _, step := range steps {
		for _, then := range []string{"install", "uninstall"} {
			t.Run(step+"/then-"+then, func(t *testing.T) {
				f := newFixture(t, []byte(origDaemonJSON))
				tb := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.xz", "xz", upstreamtest.Release("3.18.0"))
				// The same release installed by hand is in the way: identical files must survive.
				hand := f.releaseTarball(t, "kata-static-3.18.0-amd64.tar.zst", "zst", upstreamtest.Release("3.18.0"))
				must(t, os.MkdirAll(filepath.Dir(f.kataDir()), 0o755))
				if _, err := upstream.Extract(context.Background(), hand, f.kataDir(), upstream.DefaultLimits()); err != nil {
					t.Fatal(err)
				}
				handShim := f.file(filepath.Join(f.kataDir(), upstream.ShimPath))
				f.killAfterFrom(t, step, tb, f.kataDir())
				if then == "install" {
					if _, err := f.install(f.fromOpts(tb, func(o *InstallOptions) { o.Replace = ReplaceAll })); err != nil {
						t.Fatalf("rerun: %v", err)
					}
					if s := f.status(t); !s.Healthy {
						t.Fatalf("status %v", s.Problems)
					}
				}
				if _, err := f.uninstall(nil); err != nil {
					t.Fatal(err)
				}
				if got := string(f.file(f.daemonJSON())); got != origDaemonJSON {
					t.Errorf("daemon.json = %q", got)
				}
				if got := f.file(filepath.Join(f.kataDir(), upstream.ShimPath)); !bytes.Equal(got, handShim) {
					t.Errorf("the release installed by hand is not back: shim %q", got)
				}
				if _, err := os.Stat(manifest.Path(f.prefix())); !os.IsNotExist(err) {
					t.Error("the manifest is left")
				}
				entries, _ := os.ReadDir(filepath.Dir(f.kataDir()))
				if len(entries) != 1 {
					t.Errorf("beside /opt/kata: %v", entries)
				}
			})
		}
	}
}
