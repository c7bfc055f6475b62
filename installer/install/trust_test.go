package install

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/fakedocker"
	"github.com/kata-deploy/kata-deploy/installer/manifest"

	"github.com/kata-deploy/kata-deploy/installer/upstream/upstreamtest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// Root runs the shim from the prefix: install, upgrade and rollback refuse a prefix, or a parent
// of it, that another user owns or may write, naming the directory and the fix, and change
// nothing.
func TestUntrustedPrefixIsRefused(t *testing.T) {
	testreq.Root(t)
	const nobody = 65534
	tests := []struct {
		name    string
		setup   func(f *fixture) string // makes the prefix untrusted; returns the directory to blame
		run     func(f *fixture) error
		inError string
	}{
		{name: "install: world-writable parent",
			setup:   func(f *fixture) string { return chmodDir(t, filepath.Dir(f.prefix()), 0o777) },
			run:     func(f *fixture) error { _, err := f.install(nil); return err },
			inError: "chmod go-w"},
		{name: "install: a dry run too",
			setup:   func(f *fixture) string { return chmodDir(t, filepath.Dir(f.prefix()), 0o777) },
			run:     func(f *fixture) error { _, err := f.install(func(o *InstallOptions) { o.DryRun = true }); return err },
			inError: "chmod go-w"},
		{name: "install: prefix made beforehand by another user",
			setup: func(f *fixture) string {
				must(t, os.MkdirAll(f.prefix(), 0o755))
				must(t, os.Chown(f.prefix(), nobody, nobody))
				return f.prefix()
			},
			run:     func(f *fixture) error { _, err := f.install(nil); return err },
			inError: "chown root:root"},
		{name: "install: prefix under a sticky dir made by another user",
			setup: func(f *fixture) string {
				chmodDir(t, filepath.Dir(f.prefix()), 0o777|os.ModeSticky)
				must(t, os.MkdirAll(f.prefix(), 0o755))
				must(t, os.Chown(f.prefix(), nobody, nobody))
				return f.prefix()
			},
			run:     func(f *fixture) error { _, err := f.install(nil); return err },
			inError: "owned by uid 65534"},
		{name: "upgrade: group-writable prefix",
			setup: func(f *fixture) string {
				_, err := f.install(nil)
				must(t, err)
				f.newAgent(t, "agent v2")
				return chmodDir(t, f.prefix(), 0o775)
			},
			run:     func(f *fixture) error { _, err := f.upgrade(nil); return err },
			inError: "writable by its group"},
		{name: "rollback: parent owned by another user",
			setup: func(f *fixture) string {
				_, err := f.install(nil)
				must(t, err)
				f.newAgent(t, "agent v2")
				_, err = f.upgrade(nil)
				must(t, err)
				must(t, os.Chown(filepath.Dir(f.prefix()), nobody, nobody))
				return filepath.Dir(f.prefix())
			},
			run:     func(f *fixture) error { _, err := f.rollback(nil); return err },
			inError: "owned by uid 65534"},
		{name: "rollback: the previous version's directory writable by others",
			setup: func(f *fixture) string {
				_, err := f.install(nil)
				must(t, err)
				f.newAgent(t, "agent v2")
				_, err = f.upgrade(nil)
				must(t, err)
				m := f.manifest(t)
				return chmodDir(t, layout.Layout{Prefix: f.prefix(), Version: m.Previous}.Root(), 0o777)
			},
			run:     func(f *fixture) error { _, err := f.rollback(nil); return err },
			inError: "writable by others"},
		{name: "install --from: world-writable parent of the release directory",
			setup: func(f *fixture) string {
				must(t, os.MkdirAll(filepath.Dir(f.prefix()), 0o755))
				return chmodDir(t, filepath.Join(f.dir, "shared"), 0o777)
			},
			run: func(f *fixture) error {
				tb := f.releaseTarball(t, "kata-static-3.0.0-amd64.tar.xz", "xz", upstreamtest.Release("3.0.0"))
				_, err := f.install(f.fromOpts(tb, func(o *InstallOptions) { o.KataDir = filepath.Join(f.dir, "shared", "kata") }))
				return err
			},
			inError: "--kata-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, []byte(`{}`))
			blame := tt.setup(f)
			before, daemonJSON, state := f.tree(), f.file(f.daemonJSON()), f.daemon.State()
			err := tt.run(f)
			if err == nil {
				t.Fatal("the untrusted prefix was accepted")
			}
			if !strings.Contains(err.Error(), blame+" is ") || !strings.Contains(err.Error(), tt.inError) {
				t.Errorf("error %q does not name %s with %q", err, blame, tt.inError)
			}
			if after := f.tree(); !slices.Equal(before, after) {
				t.Errorf("files changed:\nbefore %q\nafter  %q", before, after)
			}
			if string(f.file(f.daemonJSON())) != string(daemonJSON) || f.daemon.State().Reloads != state.Reloads {
				t.Error("daemon.json changed or Docker was reloaded")
			}
		})
	}
}

func chmodDir(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.Chmod(dir, mode))
	return dir
}

// Root installing against a socket served by a process called dockerd that nobody runs: the
// install refuses before it changes anything, and never runs that process's binary.
func TestHostileDockerd(t *testing.T) {
	testreq.Root(t)
	fake := fakedocker.StartProcess(t, 65534, 65534)
	for _, op := range []string{"install", "upgrade", "uninstall"} {
		t.Run(op, func(t *testing.T) {
			f := newFixture(t, []byte(`{}`))
			if op != "install" {
				_, err := f.install(nil)
				must(t, err)
				f.newAgent(t, "agent v2")
			}
			d := f.deps()
			d.Docker = DefaultDeps(fake.Host).Docker
			before, m := f.tree(), f.file(manifest.Path(f.prefix()))
			var err error
			switch op {
			case "install":
				_, err = Install(context.Background(), f.options(), d)
			case "upgrade":
				i := f.options()
				_, err = Upgrade(context.Background(), UpgradeOptions{Common: i.Common, ArtifactOptions: i.ArtifactOptions}, d)
			case "uninstall":
				_, err = Uninstall(context.Background(), UninstallOptions{Common: f.options().Common}, d)
			}
			if err == nil || !strings.Contains(err.Error(), "runs as uid 65534, not root") {
				t.Errorf("%s against a dockerd run by nobody: %v", op, err)
			}
			if data, err := os.ReadFile(fake.Marker); err == nil {
				t.Errorf("the binary of the process run by nobody was run: %s", data)
			}
			if _, err := os.Stat(fake.ConfigFile); err == nil {
				t.Errorf("%s was written", fake.ConfigFile)
			}
			if after := f.tree(); !slices.Equal(before, after) || string(f.file(manifest.Path(f.prefix()))) != string(m) {
				t.Errorf("files changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}
