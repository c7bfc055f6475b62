package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/containerdsvc"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// fakeContainerd stands in for containerdsvc.Daemon. Its state (restarts, start time) lives in a
// file of the fixture, so that it survives a test process killed mid-install.
type fakeContainerd struct {
	config  string
	state   string
	systemd bool
	running bool
	major   int
	// hide makes Dump leave this runtime out, as a containerd that does not load the drop-in.
	hide string
}

func (c *fakeContainerd) ConfigFile() string { return c.config }
func (c *fakeContainerd) Running() bool      { return c.running }
func (c *fakeContainerd) MajorVersion(context.Context) (int, error) {
	if c.major == 0 {
		return 0, errors.New("no containerd")
	}
	return c.major, nil
}

// restarts returns how many times it was restarted, and when it last started.
func (c *fakeContainerd) restarts() (int, time.Time) {
	data, err := os.ReadFile(c.state)
	if err != nil {
		return 0, time.Unix(1, 0)
	}
	var n int
	var nanos int64
	fmt.Sscan(string(data), &n, &nanos)
	return n, time.Unix(0, nanos)
}

func (c *fakeContainerd) StartedAt() time.Time { _, t := c.restarts(); return t }

func (c *fakeContainerd) Restart(context.Context) (containerdsvc.Restart, error) {
	if !c.running {
		return containerdsvc.Restart{Hint: "containerd is not running"}, nil
	}
	if !c.systemd {
		return containerdsvc.Restart{Pending: true, Hint: "containerd is not run by systemd: restart it"}, nil
	}
	n, _ := c.restarts()
	c.startNow(n+1, time.Now().Add(2*time.Second)) // later than any file written so far, as a real restart is
	return containerdsvc.Restart{Restarted: true, Unit: "containerd.service"}, nil
}

func (c *fakeContainerd) startNow(n int, at time.Time) {
	_ = os.WriteFile(c.state, []byte(fmt.Sprint(n, " ", at.UnixNano())), 0o644)
}

// Dump merges the main configuration and its imports as containerd does (maps merged by key).
func (c *fakeContainerd) Dump(context.Context) ([]byte, error) {
	merged := map[string]any{}
	pending := []string{c.config}
	for len(pending) > 0 {
		path := pending[0]
		pending = pending[1:]
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && path == c.config {
			continue
		}
		if err != nil {
			return nil, err
		}
		doc, err := containerdcfg.Decode(path, data)
		if err != nil {
			return nil, err
		}
		imports, _ := containerdcfg.Imports(path, doc)
		for _, imp := range imports {
			if !filepath.IsAbs(imp) {
				imp = filepath.Join(filepath.Dir(path), imp)
			}
			matches, _ := filepath.Glob(imp)
			pending = append(pending, matches...)
		}
		delete(doc, "imports")
		deepMerge(merged, doc)
	}
	if c.hide != "" {
		for _, id := range []string{containerdcfg.PluginV2, containerdcfg.PluginV3} {
			if rts, ok := dig(merged, "plugins", id, "containerd", "runtimes"); ok {
				delete(rts, c.hide)
			}
		}
	}
	return toml.Marshal(merged)
}

func dig(doc map[string]any, keys ...string) (map[string]any, bool) {
	for _, k := range keys {
		next, ok := doc[k].(map[string]any)
		if !ok {
			return nil, false
		}
		doc = next
	}
	return doc, true
}

func deepMerge(to, from map[string]any) {
	for k, v := range from {
		if fm, ok := v.(map[string]any); ok {
			if tm, ok := to[k].(map[string]any); ok {
				deepMerge(tm, fm)
				continue
			}
		}
		to[k] = v
	}
}

func (f *fixture) ctrdConfig() string {
	return filepath.Join(f.dir, "etc", "containerd", "config.toml")
}
func (f *fixture) dropIn() string {
	return filepath.Join(f.dir, "etc", "containerd", "conf.d", "kata-deploy-kata.toml")
}

// withContainerd makes the fixture a Kubernetes node: containerd with main configuration content
// (nil: none), systemd-run unless told otherwise.
func (f *fixture) withContainerd(t testing.TB, content []byte) *fakeContainerd {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(f.ctrdConfig()), 0o755))
	if content != nil {
		must(t, os.WriteFile(f.ctrdConfig(), content, 0o640))
	}
	c := f.ctrd()
	c.startNow(0, time.Now().Add(-time.Hour))
	must(t, os.WriteFile(f.state(), nil, 0o644))
	return c
}

func (f *fixture) state() string { return filepath.Join(f.dir, "containerd-fake-opts") }

// ctrd is the fake, rebuilt from the fixture's files (a helper process sees the same one).
func (f *fixture) ctrd() *fakeContainerd {
	c := &fakeContainerd{config: f.ctrdConfig(), state: filepath.Join(f.dir, "containerd-state"), systemd: true, running: true, major: 2}
	if opts, err := os.ReadFile(f.state()); err == nil {
		c.systemd = !bytes.Contains(opts, []byte("no-systemd"))
		if _, rest, ok := bytes.Cut(opts, []byte("hide=")); ok {
			c.hide = string(bytes.Fields(rest)[0])
		}
	}
	return c
}

// ctrdInstall and friends run with --engine containerd.
func ctrdOpts(o *InstallOptions) { o.Engine = EngineContainerd }

func (f *fixture) restarts() int { n, _ := f.ctrd().restarts(); return n }

var ctrdConfigs = []struct {
	name    string
	content []byte // nil: no main configuration
	plugin  string
	edited  bool // the main configuration gets the import
}{
	{"v2 kubeadm", mustRead("../containerdcfg/testdata/config-v2-kubeadm.toml"), containerdcfg.PluginV2, true},
	{"v2 with imports", mustRead("../containerdcfg/testdata/config-v2-imports.toml"), containerdcfg.PluginV2, true},
	{"v3", mustRead("../containerdcfg/testdata/config-v3.toml"), containerdcfg.PluginV3, true},
	{"v4 default with the conf.d glob", mustRead("../containerdcfg/testdata/config-v4-default.toml"), containerdcfg.PluginV3, false},
	{"no main configuration", nil, containerdcfg.PluginV3, true},
}

func mustRead(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return data
}

func TestContainerdInstallUninstall(t *testing.T) {
	for _, tc := range ctrdConfigs {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte(origDaemonJSON))
			// The configurations name /etc/containerd; the fixture's is under its directory.
			tc.content = bytes.ReplaceAll(tc.content, []byte("/etc/containerd/"), []byte(filepath.Dir(f.ctrdConfig())+"/"))
			f.withContainerd(t, tc.content)
			reloads := f.daemon.State().Reloads
			res, err := f.install(ctrdOpts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Engine != EngineContainerd || res.ContainerdDropIn != f.dropIn() || res.Containerd == nil || !res.Containerd.Restarted ||
				res.Smoke == nil || res.Smoke.Skipped == "" || f.restarts() != 1 {
				t.Errorf("result %+v restart %+v smoke %+v restarts %d", res, res.Containerd, res.Smoke, f.restarts())
			}
			drop := string(f.file(f.dropIn()))
			l := f.layout()
			if !strings.Contains(drop, tc.plugin) || !strings.Contains(drop, l.EntryShim()) || !strings.Contains(drop, l.EntryConfig()) {
				t.Errorf("drop-in:\n%s", drop)
			}
			main := f.file(f.ctrdConfig())
			switch {
			case !tc.edited && !bytes.Equal(main, tc.content):
				t.Error("a main configuration whose imports already cover the drop-in was edited")
			case tc.edited && !bytes.Contains(main, []byte(`"`+f.dropIn()+`"`)):
				t.Errorf("the main configuration does not import the drop-in:\n%s", main)
			}
			if fi, err := os.Stat(f.ctrdConfig()); err == nil && tc.content != nil && fi.Mode().Perm() != 0o640 {
				t.Errorf("the main configuration's mode became %v", fi.Mode())
			}
			if f.daemon.State().Reloads != reloads || string(f.file(f.daemonJSON())) != origDaemonJSON {
				t.Error("--engine containerd touched Docker")
			}
			s := f.status(t)
			if !s.Healthy || !s.Registered || s.Engine != EngineContainerd || s.Containerd == nil || !s.Containerd.SeesRuntime || !s.Containerd.Imported {
				t.Errorf("status %+v containerd %+v", s, s.Containerd)
			}
			// A second install changes nothing and restarts nothing.
			again, err := f.install(ctrdOpts)
			if err != nil || again.Changed || f.restarts() != 1 {
				t.Errorf("second install: %+v %v, restarts %d", again, err, f.restarts())
			}
			dry, err := f.uninstall(func(o *UninstallOptions) { o.DryRun = true })
			if err != nil || (tc.edited && !strings.Contains(dry.ContainerdDiff, "-")) || f.restarts() != 1 || dry.ContainerdConfig != f.ctrdConfig() {
				t.Errorf("uninstall dry run: %+v %v", dry, err)
			}
			ures, err := f.uninstall(nil)
			if err != nil {
				t.Fatal(err)
			}
			if ures.ContainerdRestart == nil || !ures.ContainerdRestart.Restarted || f.restarts() != 2 {
				t.Errorf("uninstall restart %+v, restarts %d", ures.ContainerdRestart, f.restarts())
			}
			f.checkContainerdRestored(t, tc.content)
		})
	}
}

// checkContainerdRestored: the main configuration byte-identical (or absent again), no drop-in,
// nothing under the prefix.
func (f *fixture) checkContainerdRestored(t *testing.T, content []byte) {
	t.Helper()
	got, err := os.ReadFile(f.ctrdConfig())
	switch {
	case content == nil && !os.IsNotExist(err):
		t.Errorf("the main configuration install created is left: %q", got)
	case content != nil && !bytes.Equal(got, content):
		t.Errorf("main configuration after uninstall:\n%s\nwant:\n%s", got, content)
	}
	if _, err := os.Stat(filepath.Dir(f.dropIn())); !os.IsNotExist(err) {
		t.Errorf("the drop-in directory install created is left: %v", err)
	}
	if tree := f.tree(); len(tree) != 0 {
		t.Errorf("left %v", tree)
	}
}

func TestContainerdDryRun(t *testing.T) {
	f := newFixture(t, nil)
	content := mustRead("../containerdcfg/testdata/config-v3.toml")
	f.withContainerd(t, content)
	res, err := f.install(func(o *InstallOptions) { ctrdOpts(o); o.DryRun = true })
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, a := range res.Actions {
		ops = append(ops, a.Op)
	}
	for _, want := range []string{"create", "edit-containerd-config", "restart-containerd"} {
		if !slices.Contains(ops, want) {
			t.Errorf("plan lacks %q: %v", want, ops)
		}
	}
	if slices.Contains(ops, "smoke-test") || slices.Contains(ops, "edit-daemon-json") {
		t.Errorf("plan for containerd has Docker's actions: %v", ops)
	}
	if !strings.Contains(res.ContainerdDiff, `+imports = ["`+f.dropIn()+`"]`) && !strings.Contains(res.ContainerdDiff, f.dropIn()) {
		t.Errorf("diff:\n%s", res.ContainerdDiff)
	}
	if tree := f.tree(); len(tree) != 0 || !bytes.Equal(f.file(f.ctrdConfig()), content) || f.restarts() != 0 {
		t.Errorf("the dry run changed things: %v", tree)
	}
}

// Outside systemd, containerd is not restarted: the user is told, and status says so until it is.
func TestContainerdWithoutSystemd(t *testing.T) {
	f := newFixture(t, nil)
	f.withContainerd(t, []byte("version = 3\n"))
	must(t, os.WriteFile(f.state(), []byte("no-systemd"), 0o644))
	res, err := f.install(ctrdOpts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Containerd == nil || !res.Containerd.Pending || !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "restart it") }) {
		t.Errorf("result %+v warnings %q", res.Containerd, res.Warnings)
	}
	s := f.status(t)
	if s.Healthy || s.Containerd == nil || !s.Containerd.RestartPending {
		t.Errorf("status before the restart: %+v", s.Containerd)
	}
	f.ctrd().startNow(1, time.Now().Add(2*time.Second)) // the user restarts it
	if s := f.status(t); !s.Healthy || s.Containerd.RestartPending {
		t.Errorf("status after the restart: %+v %v", s.Containerd, s.Problems)
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	if string(f.file(f.ctrdConfig())) != "version = 3\n" || len(f.tree()) != 0 {
		t.Errorf("config %q, left %v", f.file(f.ctrdConfig()), f.tree())
	}
}

// A configuration containerd would not load the runtime from is undone, and containerd is not
// restarted.
func TestContainerdValidationFailureUndoes(t *testing.T) {
	f := newFixture(t, nil)
	content := []byte("version = 2\n")
	f.withContainerd(t, content)
	must(t, os.WriteFile(f.state(), []byte("hide=kata"), 0o644))
	_, err := f.install(ctrdOpts)
	if err == nil || !strings.Contains(err.Error(), "removed again") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(f.file(f.ctrdConfig()), content) || f.restarts() != 0 {
		t.Errorf("config %q, restarts %d", f.file(f.ctrdConfig()), f.restarts())
	}
	if _, err := os.Stat(f.dropIn()); !os.IsNotExist(err) {
		t.Error("the drop-in is left")
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	f.checkContainerdRestored(t, content)
}

func TestContainerdRefusals(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	f.withContainerd(t, []byte("# containerd 1.x, no version\n[plugins.cri]\n"))
	if _, err := f.install(ctrdOpts); err == nil || !strings.Contains(err.Error(), "config migrate") {
		t.Errorf("version 1: %v", err)
	}
	must(t, os.WriteFile(f.ctrdConfig(), []byte("version = 3\n"), 0o644))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.install(ctrdOpts); err == nil || !strings.Contains(err.Error(), "registered with docker") {
		t.Errorf("containerd over a Docker install: %v", err)
	}
	if _, err := f.install(func(o *InstallOptions) { ctrdOpts(o); o.ContainerdConfig = "/elsewhere.toml" }); err == nil {
		t.Error("a --containerd-config that containerd does not read was accepted")
	}
	if err := (InstallOptions{Engine: "podman"}).Validate(); err == nil || !strings.Contains(err.Error(), "--engine") {
		t.Errorf("engine podman: %v", err)
	}
}

// Upgrade and rollback with containerd: current switches, the drop-in stays, containerd is not
// restarted.
func TestContainerdUpgradeAndRollback(t *testing.T) {
	f := newFixture(t, nil)
	f.withContainerd(t, []byte("version = 3\n"))
	first, err := f.install(ctrdOpts)
	if err != nil {
		t.Fatal(err)
	}
	drop, restarts := f.file(f.dropIn()), f.restarts()
	f.newAgent(t, "agent v2")
	res, err := f.upgrade(nil)
	if err != nil || res.PreviousVersion != first.Version || res.Engine != EngineContainerd {
		t.Fatalf("upgrade: %+v %v", res, err)
	}
	rb, err := f.rollback(nil)
	if err != nil || rb.To != first.Version || rb.Smoke == nil || rb.Smoke.Skipped == "" {
		t.Fatalf("rollback: %+v %v", rb, err)
	}
	if !bytes.Equal(f.file(f.dropIn()), drop) || f.restarts() != restarts {
		t.Error("upgrade or rollback changed the drop-in or restarted containerd")
	}
	if _, err := f.uninstall(nil); err != nil {
		t.Fatal(err)
	}
	f.checkContainerdRestored(t, []byte("version = 3\n"))
}

// Killed after any step, an install with containerd is completed by a rerun, or undone by an
// uninstall that restores the main configuration byte for byte.
func TestKilledContainerdInstallIsCompleted(t *testing.T) {
	content := mustRead("../containerdcfg/testdata/config-v2-kubeadm.toml")
	for _, step := range ContainerdInstallSteps {
		for _, then := range []string{"install", "uninstall"} {
			t.Run(step+"/then-"+then, func(t *testing.T) {
				f := newFixture(t, nil)
				f.withContainerd(t, content)
				f.killAfterWith(t, "install", step, EngineContainerd)
				if then == "install" {
					if _, err := f.install(ctrdOpts); err != nil {
						t.Fatalf("rerun: %v", err)
					}
					if s := f.status(t); !s.Healthy {
						t.Fatalf("status %+v %v", s.Containerd, s.Problems)
					}
				}
				if _, err := f.uninstall(nil); err != nil {
					t.Fatal(err)
				}
				f.checkContainerdRestored(t, content)
			})
		}
	}
}

func TestKilledContainerdUninstallIsCompleted(t *testing.T) {
	for _, step := range ContainerdUninstallSteps {
		t.Run(step, func(t *testing.T) {
			f := newFixture(t, nil)
			f.withContainerd(t, nil)
			if _, err := f.install(ctrdOpts); err != nil {
				t.Fatal(err)
			}
			f.killAfterWith(t, "uninstall", step, EngineContainerd)
			if _, err := f.uninstall(nil); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			f.checkContainerdRestored(t, nil)
			if f.restarts() < 2 {
				t.Errorf("containerd was restarted %d times: the uninstall's restart was lost", f.restarts())
			}
		})
	}
}

// runningFrom finds processes by the directory of their executable: a VM container's shim.
func TestRunningFrom(t *testing.T) {
	sleep := testreq.Command(t, "sleep", "coreutils")
	prefix := t.TempDir()
	bin := filepath.Join(prefix, "versions", "abc", "bin", "containerd-shim-kata-v2")
	must(t, os.MkdirAll(filepath.Dir(bin), 0o755))
	must(t, os.WriteFile(bin, mustRead(sleep), 0o755))
	cmd := exec.Command(bin, "30")
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	got := runningFrom("/proc", []string{prefix})
	if len(got) != 1 || got[0].ID != "pid "+strconv.Itoa(cmd.Process.Pid) || got[0].Name != "containerd-shim-kata-v2" {
		t.Errorf("runningFrom = %+v", got)
	}
	if got := runningFrom("/proc", []string{t.TempDir()}); len(got) != 0 {
		t.Errorf("found %+v in an empty directory", got)
	}
}
