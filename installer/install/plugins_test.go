package install

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
)

// fakeSystemd stands in for systemd: "start" serves the plugin's sockets (unless broken),
// "disable --now" stops serving it; every call is recorded.
type fakeSystemd struct {
	mu        sync.Mutex
	socket    string // the volume driver's
	netSocket string // the network driver's
	broken    bool   // the unit starts but never serves
	l, nl     net.Listener
	calls     []string
}

func (s *fakeSystemd) run(_ context.Context, args ...string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, strings.Join(args, " "))
	switch args[0] {
	case "start", "restart":
		if s.l == nil && !s.broken {
			l, err := net.Listen("unix", s.socket)
			if err != nil {
				return nil, err
			}
			nl, err := net.Listen("unix", s.netSocket)
			if err != nil {
				l.Close()
				return nil, err
			}
			s.l, s.nl = l, nl
		}
	case "disable":
		if s.l != nil {
			s.l.Close() // removes the sockets, as kata-plugins does
			s.nl.Close()
			s.l, s.nl = nil, nil
		}
	case "show":
		if s.l != nil {
			return []byte("4242\n"), nil
		}
		return []byte("0\n"), nil
	}
	return nil, nil
}

func (s *fakeSystemd) called(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// pluginFixture is a fixture whose artifacts hold kata-plugins, with a fake systemd.
type pluginFixture struct {
	*fixture
	sd   *fakeSystemd
	opts PluginOptions
}

func newPluginFixture(t *testing.T) *pluginFixture {
	f := newFixture(t, []byte("{}\n"))
	must(t, os.WriteFile(filepath.Join(f.artifacts(), pluginsvc.BinaryName), []byte("#!/bin/sh\n# plugins v1\n"), 0o755))
	// Unix socket paths are short: a directory of its own, not under the test's long TempDir.
	sockDir, err := os.MkdirTemp("", "kp")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	pf := &pluginFixture{fixture: f, opts: PluginOptions{Name: "kata-block-t", StateDir: filepath.Join(f.dir, "var", "lib", "kd", "block"),
		SocketDir: sockDir, UnitDir: filepath.Join(f.dir, "etc", "systemd"), ServeTimeout: 500 * time.Millisecond,
		NetworkName: "kata-net-t", NetworkStateDir: filepath.Join(f.dir, "var", "lib", "kd", "net")}}
	pf.sd = &fakeSystemd{socket: filepath.Join(sockDir, "kata-block-t.sock"), netSocket: filepath.Join(sockDir, "kata-net-t.sock")}
	must(t, os.MkdirAll(pf.opts.UnitDir, 0o755))
	t.Cleanup(func() { _, _ = pf.sd.run(context.Background(), "disable", "--now") })
	return pf
}

func (pf *pluginFixture) deps() Deps {
	d := pf.fixture.deps()
	d.SystemdRuns = func() bool { return true }
	d.Systemctl = pf.sd.run
	return d
}

func (pf *pluginFixture) install(t *testing.T) (*Result, error) {
	o := pf.options()
	o.SkipSmoke, o.WithPlugins, o.Plugin = true, true, pf.opts
	return Install(context.Background(), o, pf.deps())
}

func (pf *pluginFixture) uninstall(force bool) (*UninstallResult, error) {
	o := UninstallOptions{Common: pf.options().Common, RemovePluginWithVolumes: force}
	return Uninstall(context.Background(), o, pf.deps())
}

func (pf *pluginFixture) unit() string {
	return filepath.Join(pf.opts.UnitDir, pluginsvc.UnitName(pf.opts.Name))
}

func TestInstallWithPluginsSystemd(t *testing.T) {
	pf := newPluginFixture(t)
	res, err := pf.install(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plugin == nil || !res.Plugin.Started || res.Plugin.Mode != manifest.PluginSystemd || !pluginsvc.Reachable(pf.sd.socket) {
		t.Fatalf("plugin not started: %+v", res.Plugin)
	}
	unit := string(pf.file(pf.unit()))
	bin := filepath.Join(pf.prefix(), PluginDirName, pluginsvc.BinaryName)
	if !strings.Contains(unit, "ExecStart="+bin+" --volume-name kata-block-t --state-dir "+pf.opts.StateDir) || !strings.Contains(unit, "Before=docker.service") ||
		!strings.Contains(unit, " --network-name kata-net-t --network-state-dir "+pf.opts.NetworkStateDir+"\n") {
		t.Errorf("unit:\n%s", unit)
	}
	if string(pf.file(bin)) != "#!/bin/sh\n# plugins v1\n" {
		t.Errorf("binary not installed")
	}
	for _, d := range []string{pf.opts.StateDir, pf.opts.NetworkStateDir} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("state dir %s: %v %v", d, fi, err)
		}
	}
	// A second install with the plugin serving changes nothing and restarts nothing.
	res, err = pf.install(t)
	if err != nil || res.Changed || pf.sd.called("restart") != 0 || pf.sd.called("start") != 1 {
		t.Fatalf("second install: changed %v, calls %v, %v, %+v", res.Changed, pf.sd.calls, err, res.Actions)
	}
	s, err := GetStatus(context.Background(), pf.statusOptions(), pf.deps())
	if err != nil || s.Plugin == nil || !s.Plugin.Running || !s.Plugin.SocketReachable || s.Plugin.Volumes == nil || *s.Plugin.Volumes != 0 || !s.Healthy {
		t.Fatalf("status: %+v %+v %v", s, s.Plugin, err)
	}
	// Stopped: status says so, and install starts it again.
	_, _ = pf.sd.run(context.Background(), "disable", "--now")
	if s, _ := GetStatus(context.Background(), pf.statusOptions(), pf.deps()); s.Healthy || s.Plugin.Running {
		t.Errorf("status of a stopped plugin: healthy %v, %+v", s.Healthy, s.Plugin)
	}
	if res, err := pf.install(t); err != nil || !res.Plugin.Started || !pluginsvc.Reachable(pf.sd.socket) {
		t.Fatalf("install did not start the stopped plugin: %+v %v", res.Plugin, err)
	}
}

// Uninstall refuses while Docker has volumes of the driver, changing nothing; --force removes the
// plugin and lists the volumes; without volumes nothing of the plugin is left.
func TestUninstallPluginVolumes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		volumes  []string
		networks []string
		force    bool
		wantErr  error
		want     string // in the refusal
	}{
		{"no volumes", nil, nil, false, nil, ""},
		{"volumes refused", []string{"v2", "v1"}, nil, false, ErrPluginInUse, "docker volume rm v2 v1"},
		{"networks refused", nil, []string{"n1"}, false, ErrPluginInUse, "docker network rm n1"},
		{"volumes forced", []string{"v1"}, nil, true, nil, ""},
		{"networks forced", nil, []string{"n1"}, true, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPluginFixture(t)
			before := pf.file(pf.daemonJSON())
			if _, err := pf.install(t); err != nil {
				t.Fatal(err)
			}
			pf.daemon.Volumes = map[string][]string{pf.opts.Name: tc.volumes}
			pf.daemon.Networks = map[string][]string{pf.opts.NetworkName: tc.networks}
			for _, v := range tc.volumes { // what the plugin keeps of a volume
				must(t, os.MkdirAll(filepath.Join(pf.opts.StateDir, v), 0o700))
			}
			res, err := pf.uninstall(tc.force)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("uninstall: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !strings.Contains(err.Error(), tc.want) || !pluginsvc.Reachable(pf.sd.socket) || pf.sd.called("disable") != 0 {
					t.Errorf("refusal: %v; serving %v; calls %v", err, pluginsvc.Reachable(pf.sd.socket), pf.sd.calls)
				}
				if _, err := os.Stat(manifest.Path(pf.prefix())); err != nil {
					t.Errorf("the refused uninstall removed the manifest: %v", err)
				}
				return
			}
			if pluginsvc.Reachable(pf.sd.socket) || pf.file(pf.unit()) != nil || pf.sd.called("disable --now "+pluginsvc.UnitName(pf.opts.Name)) != 1 {
				t.Errorf("plugin left: calls %v", pf.sd.calls)
			}
			if got := pf.file(pf.daemonJSON()); string(got) != string(before) {
				t.Errorf("daemon.json %q, want %q", got, before)
			}
			if tc.force != (len(res.PluginVolumes)+len(res.PluginNetworks) > 0) || (tc.force && res.PluginStateKept != pf.opts.StateDir) {
				t.Errorf("forced: volumes %v, networks %v, state kept %q", res.PluginVolumes, res.PluginNetworks, res.PluginStateKept)
			}
			_, stateErr := os.Stat(pf.opts.StateDir)
			if left := pf.tree(); len(tc.volumes)+len(tc.networks) == 0 && (len(left) != 0 || !os.IsNotExist(stateErr) || dirExists(filepath.Join(pf.dir, "var"))) {
				t.Errorf("left: %v, state dir: %v", left, stateErr)
			}
			if len(tc.volumes)+len(tc.networks) > 0 && stateErr != nil {
				t.Errorf("the volumes' images were removed: %v", stateErr)
			}
		})
	}
}

func dirExists(p string) bool { _, err := os.Stat(p); return err == nil }

// A plugin that never serves fails the install and leaves nothing of the plugin; the runtime
// stays installed.
func TestInstallWithPluginsFailureRemovesPlugin(t *testing.T) {
	pf := newPluginFixture(t)
	pf.sd.broken = true
	if _, err := pf.install(t); !errors.Is(err, pluginsvc.ErrNotServing) || !strings.Contains(err.Error(), "removed again") {
		t.Fatalf("install: %v", err)
	}
	m, err := manifest.Load(pf.prefix())
	if err != nil || m.Plugin != nil || m.File(filepath.Join(pf.prefix(), PluginDirName, pluginsvc.BinaryName)) != nil || slices.Contains(m.Dirs, filepath.Join(pf.prefix(), PluginDirName)) {
		t.Fatalf("manifest still records the plugin: %+v %v", m, err)
	}
	if pf.file(pf.unit()) != nil || dirExists(filepath.Join(pf.prefix(), PluginDirName)) || dirExists(filepath.Join(pf.dir, "var")) || pf.sd.called("disable") != 1 {
		t.Errorf("plugin files left; calls %v", pf.sd.calls)
	}
	if !pf.loaded() {
		t.Error("the runtime should stay installed")
	}
}

func TestPluginOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*InstallOptions)
		want string
	}{
		{"containerd", func(o *InstallOptions) { o.Engine = EngineContainerd }, "--engine docker"},
		{"bad name", func(o *InstallOptions) { o.Plugin.Name = "Bad/Name" }, "plugin name"},
		{"relative state", func(o *InstallOptions) { o.Plugin.StateDir = "state" }, "state directory"},
		{"space in state", func(o *InstallOptions) { o.Plugin.StateDir = "/a b" }, "state directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := InstallOptions{WithPlugins: true}
			tc.mod(&o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

// Outside systemd, from the installer image, the plugin is refused before anything changes.
func TestPluginFromContainerWithoutSystemd(t *testing.T) {
	pf := newPluginFixture(t)
	o := pf.options()
	o.SkipSmoke, o.WithPlugins, o.Plugin = true, true, pf.opts
	o.Plugin.FromContainer = true
	d := pf.deps()
	d.SystemdRuns = func() bool { return false }
	if _, err := Install(context.Background(), o, d); err == nil || !strings.Contains(err.Error(), "on the host itself") {
		t.Fatalf("install: %v", err)
	}
	if dirExists(pf.prefix()) {
		t.Error("the refused install changed the host")
	}
}

// A unit of the same name made by hand is refused, or kept aside with --replace-foreign and put
// back by uninstall.
func TestPluginForeignUnit(t *testing.T) {
	pf := newPluginFixture(t)
	mine := []byte("[Service]\nExecStart=/usr/local/bin/kata-plugins\n")
	must(t, os.WriteFile(pf.unit(), mine, 0o644))
	if _, err := pf.install(t); err == nil || !strings.Contains(err.Error(), "--replace-foreign") {
		t.Fatalf("install over a foreign unit: %v", err)
	}
	o := pf.options()
	o.SkipSmoke, o.WithPlugins, o.Plugin, o.Replace = true, true, pf.opts, Replace{Foreign: true}
	if _, err := Install(context.Background(), o, pf.deps()); err != nil {
		t.Fatal(err)
	}
	if got := pf.file(pf.unit()); strings.Contains(string(got), "/usr/local/bin") {
		t.Fatalf("unit not replaced:\n%s", got)
	}
	if _, err := pf.uninstall(false); err != nil {
		t.Fatal(err)
	}
	if got := pf.file(pf.unit()); string(got) != string(mine) {
		t.Errorf("uninstall did not put the unit back: %q", got)
	}
}

// Without Docker the volumes cannot be counted: the plugin is removed, its state kept.
func TestUninstallPluginWithoutDocker(t *testing.T) {
	pf := newPluginFixture(t)
	if _, err := pf.install(t); err != nil {
		t.Fatal(err)
	}
	d := pf.deps()
	d.Docker = func(context.Context) (Docker, dockerd.ConfigLocation, error) {
		return nil, dockerd.ConfigLocation{}, errors.New("connection refused")
	}
	res, err := Uninstall(context.Background(), UninstallOptions{Common: pf.options().Common}, d)
	if err != nil {
		t.Fatal(err)
	}
	if res.PluginStateKept != pf.opts.StateDir || !dirExists(pf.opts.StateDir) || pluginsvc.Reachable(pf.sd.socket) || pf.file(pf.unit()) != nil {
		t.Errorf("state kept %q (exists %v), serving %v", res.PluginStateKept, dirExists(pf.opts.StateDir), pluginsvc.Reachable(pf.sd.socket))
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "cannot be counted") {
		t.Errorf("warnings: %v", res.Warnings)
	}
}

// A network driver socket someone else serves is refused before anything changes: kata-plugins
// would replace it.
func TestPluginForeignNetworkSocket(t *testing.T) {
	pf := newPluginFixture(t)
	l, err := net.Listen("unix", pf.sd.netSocket)
	must(t, err)
	defer l.Close()
	_, err = pf.install(t)
	if err == nil || !strings.Contains(err.Error(), pf.sd.netSocket) || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("install: %v, want a refusal naming %s", err, pf.sd.netSocket)
	}
	if pf.sd.called("start") != 0 || pf.file(pf.unit()) != nil {
		t.Errorf("the refused install started or wrote the plugin: calls %v", pf.sd.calls)
	}
}
