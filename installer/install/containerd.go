package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/textdiff"
)

// containerd registration steps, as passed to Options.AfterStep.
const (
	StepDropIn            = "containerd-drop-in"          // the drop-in is written
	StepImportJournaled   = "containerd-import-journaled" // the imports edit is journaled, not yet written
	StepImportWritten     = "containerd-import-written"   // the main configuration imports the drop-in
	StepContainerdRestart = "containerd-restarted"        // containerd was restarted (or told to be)
	StepImportReverted    = "containerd-import-reverted"  // uninstall: the imports edit is undone
	StepDropInRemoved     = "containerd-drop-in-removed"  // uninstall: the drop-in is gone
)

// The drop-in is <directory of the main configuration>/conf.d/kata-deploy-<runtime>.toml:
// containerd 2.x's default configuration imports conf.d/*.toml already.
const (
	dropInPrefix           = "kata-deploy-"
	containerdDropInSubdir = "conf.d"
)

// ContainerdInstallSteps lists every point at which an install with --engine containerd calls
// AfterStep on a fresh install (no smoke test: there is no Docker to run it).
var ContainerdInstallSteps = []string{StepPrefix, StepDirs, StepShim, StepImageStaged, StepImage, StepConfig,
	StepSwitchJournaled, StepSwitched, StepDropIn, StepImportJournaled, StepImportWritten, StepContainerdRestart,
	StepRegistered, StepInstalled}

// ContainerdUninstallSteps lists every point at which such an uninstall calls AfterStep.
var ContainerdUninstallSteps = []string{StepUninstalling, StepImportReverted, StepDropInRemoved, StepContainerdRestart,
	StepUnregistered, StepFiles, StepDirsRemoved, StepManifestGone}

// ctrdPlan is the registration with containerd.
type ctrdPlan struct {
	daemon  Containerd
	config  string // the main configuration
	version int    // its version
	create  bool   // it does not exist: install creates it
	dropIn  fileAction
	newDirs []string // the drop-in's directory and its missing parents, parents first
	edit    *containerdcfg.ImportEdit
	old     []byte // the main configuration now, and once edited (for the dry run's diff)
	new     []byte
	runtime containerdcfg.Runtime
}

func (c *ctrdPlan) changes() bool {
	return c != nil && (writes(c.dropIn) || c.edit != nil || len(c.newDirs) > 0)
}

// manifestEngine is the manifest's name of an engine.
func manifestEngine(engine string) string {
	if engine == EngineContainerd {
		return manifest.EngineContainerd
	}
	return manifest.EngineDocker
}

func optionsEngine(m *manifest.Manifest) string {
	if m.Engine == manifest.EngineContainerd {
		return EngineContainerd
	}
	return EngineDocker
}

// checkEngine refuses to register an install with a second engine.
func (x *installer) checkEngine(m *manifest.Manifest) error {
	if m == nil {
		return nil
	}
	if x.o.upgrade {
		x.o.Engine = optionsEngine(m)
		return nil
	}
	if got := optionsEngine(m); got != x.o.Engine {
		return fmt.Errorf("the install under %s is registered with %s, not %s: uninstall it first, or install into another --prefix", x.o.Prefix, got, x.o.Engine)
	}
	return nil
}

// planContainerd plans the drop-in and the imports edit. Nothing is written.
func (x *installer) planContainerd(ctx context.Context, p *plan, m *manifest.Manifest) (*ctrdPlan, error) {
	d, err := x.d.Containerd(ctx, x.o.ContainerdAddress, x.o.ContainerdConfig)
	if err != nil {
		return nil, err
	}
	c := &ctrdPlan{daemon: d, config: d.ConfigFile()}
	return c, x.planDropIn(ctx, c, p, m)
}

// planDropIn fills in the plan of the drop-in and the imports edit.
func (x *installer) planDropIn(ctx context.Context, c *ctrdPlan, p *plan, m *manifest.Manifest) error {
	d := c.daemon
	if m != nil && m.Containerd != nil && m.Containerd.Config != c.config {
		return fmt.Errorf("an earlier install registered the runtime through %s, but containerd now reads %s: run `kata-deploy uninstall` first", m.Containerd.Config, c.config)
	}
	data, info, err := daemonjson.ReadFile(c.config)
	if err != nil {
		return err
	}
	if c.version, err = x.configVersion(ctx, d, c.config, data, info.Exists); err != nil {
		return err
	}
	c.create = !info.Exists
	dropIn := filepath.Join(filepath.Dir(c.config), containerdDropInSubdir, dropInPrefix+x.o.RuntimeName+".toml")
	c.runtime = containerdcfg.Runtime{Name: x.o.RuntimeName, Path: p.artifacts.entryShim(p), ConfigPath: p.artifacts.entryConfig(p)}
	content, err := containerdcfg.DropIn(c.version, c.runtime, []string{
		fmt.Sprintf("Written by kata-deploy: the VM runtime %q (RuntimeClass handler %q), installed under %s.", x.o.RuntimeName, x.o.RuntimeName, x.o.Prefix),
		fmt.Sprintf("`kata-deploy uninstall --prefix %s` removes it and the import of it in %s.", x.o.Prefix, filepath.Base(c.config)),
	})
	if err != nil {
		return err
	}
	f := fileAction{Path: dropIn, Mode: 0o644, Data: content, SHA256: bytesSum(content), Size: int64(len(content))}
	if c.dropIn, err = planFile(m, f, x.o.Replace); err != nil {
		return err
	}
	if c.newDirs, err = missingDirs(filepath.Dir(dropIn)); err != nil {
		return err
	}
	c.old = data
	c.new, c.edit, err = importEdit(c.config, data, info.Exists, c.version, dropIn)
	return err
}

// configVersion is the main configuration's version, or, for one to be created, the version
// containerd's release uses.
func (x *installer) configVersion(ctx context.Context, d Containerd, path string, data []byte, exists bool) (int, error) {
	if !exists {
		major, err := d.MajorVersion(ctx)
		if err != nil {
			return 0, fmt.Errorf("%s does not exist and containerd's version is unknown (%w): create it with `containerd config default > %s`", path, err, path)
		}
		return containerdcfg.VersionForDaemon(major), nil
	}
	doc, err := containerdcfg.Decode(path, data)
	if err != nil {
		return 0, err
	}
	v, err := containerdcfg.Version(path, doc)
	if err != nil {
		return 0, err
	}
	if _, err := containerdcfg.PluginID(v); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// importEdit computes the main configuration with the drop-in imported; a configuration that
// does not exist is created holding only its version and the import.
func importEdit(path string, data []byte, exists bool, version int, dropIn string) ([]byte, *containerdcfg.ImportEdit, error) {
	if exists {
		return containerdcfg.AddImport(path, data, dropIn)
	}
	base := []byte(fmt.Sprintf("# Written by kata-deploy; `kata-deploy uninstall` removes it.\nversion = %d\n", version))
	out, _, err := containerdcfg.AddImport(path, base, dropIn)
	if err != nil {
		return nil, nil, err
	}
	return out, &containerdcfg.ImportEdit{Offset: 0, Text: string(out), BeforeSHA256: containerdcfg.Sum(nil), AfterSHA256: containerdcfg.Sum(out)}, nil
}

// missingDirs lists dir and its ancestors that do not exist, parents first.
func missingDirs(dir string) ([]string, error) {
	var dirs []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("%s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(dirs)
	return dirs, nil
}

func (c *ctrdPlan) files() []fileAction { return []fileAction{c.dropIn} }

func (c *ctrdPlan) report(res *Result) {
	res.ContainerdConfig, res.ContainerdDropIn, res.ContainerdDiff = c.config, c.dropIn.Path, c.diff()
}

func (c *ctrdPlan) apply(ctx context.Context, x *installer, _ *plan) error {
	return x.registerContainerd(ctx, c)
}

// verify has no smoke container to run: there is no Docker.
func (c *ctrdPlan) verify(_ context.Context, x *installer, _ *plan) error {
	x.res.Smoke = &Smoke{Skipped: "--engine containerd: no Docker to run a container with; run a pod with a RuntimeClass whose handler is " + x.o.RuntimeName}
	return nil
}

// ensure makes a restart a killed run did not make.
func (c *ctrdPlan) ensure(ctx context.Context, x *installer, _ *plan) error {
	return x.ensureContainerdLoaded(ctx)
}

// inUse finds the shims running from the install: there is no Docker to ask which containers
// use the runtime.
func (c *ctrdPlan) inUse(_ context.Context, x *installer, res *UninstallResult) (func(), error) {
	return func() {}, x.checkShims(res)
}

// rolledBack has no smoke container to run: there is no Docker.
func (c *ctrdPlan) rolledBack(_ context.Context, _ *installer, res *RollbackResult) error {
	res.Smoke = &Smoke{Skipped: "--engine containerd: no Docker to run a container with"}
	return nil
}

func (c *ctrdPlan) status(ctx context.Context, s *Status, m *manifest.Manifest, d Deps, o options, _, _ string) {
	s.checkContainerd(ctx, m, d, o)
}

func (c *ctrdPlan) revert(ctx context.Context, x *installer) error {
	if err := x.unregisterContainerd(ctx, true); err != nil {
		return err
	}
	return x.done(StepUnregistered)
}

// actions render the containerd part of the plan.
func (c *ctrdPlan) actions(*plan, options) []Action {
	var as []Action
	for _, d := range c.newDirs {
		as = append(as, Action{Op: "mkdir", Target: d})
	}
	as = append(as, fileActions(c.dropIn, fmt.Sprintf("containerd drop-in registering runtime %q (config version %d)", c.runtime.Name, c.version))...)
	if c.edit != nil {
		op, detail := "edit-containerd-config", "add the drop-in to imports"
		if c.create {
			op, detail = "create", "containerd's main configuration: its version and the import of the drop-in"
		}
		as = append(as, Action{Op: op, Target: c.config, Detail: detail})
	}
	if c.changes() {
		as = append(as, Action{Op: "restart-containerd", Target: "containerd", Detail: "systemctl restart when systemd runs it; containerd has no reload"})
	}
	return as
}

func (c *ctrdPlan) diff() string {
	if c.edit == nil {
		return ""
	}
	return textdiff.Unified("a"+c.config, "b"+c.config, string(c.old), string(c.new))
}

// registerContainerd writes the drop-in and the import, checks that containerd would load the
// runtime, and restarts containerd; a configuration containerd would not load is undone.
func (x *installer) registerContainerd(ctx context.Context, c *ctrdPlan) error {
	x.m.Engine = manifest.EngineContainerd
	if x.m.Containerd == nil {
		x.m.Containerd = &containerdcfg.State{}
	}
	st := x.m.Containerd
	st.Config, st.ConfigVersion, st.DropIn = c.config, c.version, c.dropIn.Path
	if err := x.makeDropInDirs(c); err != nil {
		return err
	}
	if writes(c.dropIn) || c.dropIn.State == fileForeign {
		st.RestartNeeded = true
	}
	if err := x.putFile(c.dropIn, StepDropIn); err != nil {
		return err
	}
	if err := x.addImport(ctx, st, c); err != nil {
		return err
	}
	if err := x.validateContainerd(ctx, c); err != nil {
		if rerr := x.unregisterContainerd(ctx, false); rerr != nil {
			return fmt.Errorf("%w; undoing the registration failed too: %v (run `kata-deploy uninstall`)", err, rerr)
		}
		return fmt.Errorf("%w; the drop-in and the import were removed again", err)
	}
	if err := x.restartContainerd(ctx, c.daemon, st); err != nil {
		return err
	}
	return x.done(StepRegistered)
}

func (x *installer) makeDropInDirs(c *ctrdPlan) error {
	if len(c.newDirs) == 0 {
		return nil
	}
	for _, d := range c.newDirs {
		x.m.AddDir(d)
	}
	if err := x.save(); err != nil {
		return err
	}
	for _, d := range c.newDirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return nil
}

// addImport adds the drop-in to the main configuration's imports, journaled. The file is read
// again: it may have changed since the plan.
func (x *installer) addImport(ctx context.Context, st *containerdcfg.State, c *ctrdPlan) error {
	data, info, err := daemonjson.ReadFile(c.config)
	if err != nil {
		return err
	}
	out, edit, err := importEdit(c.config, data, info.Exists, c.version, c.dropIn.Path)
	if err != nil || edit == nil {
		return err
	}
	st.PendingImport, st.RestartNeeded = edit, true
	st.ConfigCreated = st.ConfigCreated || !info.Exists
	if err := x.save(); err != nil {
		return err
	}
	x.after(StepImportJournaled)
	if err := daemonjson.WriteFileAtomic(c.config, out, info); err != nil {
		return fmt.Errorf("writing %s: %w", c.config, err)
	}
	st.Import, st.PendingImport = edit, nil
	return x.done(StepImportWritten)
}

// reconcileContainerd settles an imports edit journaled before a crash: the file says whether
// the write happened.
func reconcileContainerd(m *manifest.Manifest) error {
	st := m.Containerd
	if st == nil || st.PendingImport == nil {
		return nil
	}
	data, info, err := daemonjson.ReadFile(st.Config)
	if err != nil {
		return fmt.Errorf("settling an interrupted write of %s: %w", st.Config, err)
	}
	if containerdcfg.Sum(data) == st.PendingImport.BeforeSHA256 && (info.Exists || st.PendingImport.BeforeSHA256 == containerdcfg.Sum(nil)) {
		if !info.Exists {
			st.ConfigCreated = false
		}
	} else {
		st.Import = st.PendingImport
	}
	st.PendingImport = nil
	return nil
}

// validateContainerd checks, with `containerd config dump`, that containerd merges the drop-in
// and sees the runtime as written.
func (x *installer) validateContainerd(ctx context.Context, c *ctrdPlan) error {
	dump, err := c.daemon.Dump(ctx)
	if err != nil {
		x.warn(fmt.Sprintf("the configuration could not be checked with containerd (%v): it is checked when containerd restarts", err))
		return nil
	}
	doc, err := containerdcfg.Decode("containerd config dump", dump)
	if err != nil {
		return err
	}
	got, ok := containerdcfg.FindRuntime(doc, c.runtime.Name)
	switch {
	case !ok:
		return fmt.Errorf("containerd does not see runtime %q in its configuration (`containerd --config %s config dump` lacks it): is %s imported?", c.runtime.Name, c.config, c.dropIn.Path)
	case got != c.runtime:
		return fmt.Errorf("containerd sees runtime %q as %+v, not %+v: another file (%s or one of its imports) overrides it", c.runtime.Name, got, c.runtime, c.config)
	}
	return nil
}

// restartContainerd restarts containerd when the registration changed since it last started.
func (x *installer) restartContainerd(ctx context.Context, d Containerd, st *containerdcfg.State) error {
	if !st.RestartNeeded {
		return nil
	}
	r, err := d.Restart(ctx)
	if err != nil {
		return err
	}
	x.res.Containerd = &r
	switch {
	case r.Restarted:
		x.o.progress(fmt.Sprintf("restarted containerd (systemctl restart %s; it has no reload): running containers keep their shims", r.Unit))
	case r.Pending:
		x.warn(r.Hint)
	}
	st.RestartNeeded = r.Pending
	return x.done(StepContainerdRestart)
}

// ensureContainerdLoaded is a rerun with nothing to change: a restart a killed run did not make
// is made now.
func (x *installer) ensureContainerdLoaded(ctx context.Context) error {
	st := x.m.Containerd
	if st == nil || !st.RestartNeeded {
		return nil
	}
	d, err := x.containerd(ctx)
	if err != nil {
		return err
	}
	if !restartPending(d, st) && d.Running() {
		st.RestartNeeded = false // restarted by hand since
		return x.save()
	}
	x.res.Changed = true
	return x.restartContainerd(ctx, d, st)
}

// unregisterContainerd removes the import and the drop-in, then restarts containerd (restart
// false: leave that to the caller).
func (x *installer) unregisterContainerd(ctx context.Context, restart bool) error {
	st := x.m.Containerd
	if st == nil {
		return nil
	}
	if err := reconcileContainerd(x.m); err != nil {
		return err
	}
	if err := x.removeImport(st); err != nil {
		return err
	}
	if rec := x.m.File(st.DropIn); rec != nil {
		var scratch UninstallResult
		if x.removeFile(*rec, &scratch) != "kept" {
			x.m.Files = slices.DeleteFunc(x.m.Files, func(f manifest.File) bool { return f.Path == st.DropIn })
			st.RestartNeeded = true
		}
		if err := x.done(StepDropInRemoved); err != nil {
			return err
		}
	}
	if !restart {
		return nil
	}
	d, err := x.containerd(ctx)
	if err != nil {
		x.warn(fmt.Sprintf("containerd could not be found (%v): restart it to unload runtime %q", err, x.m.RuntimeName))
		return nil
	}
	return x.restartContainerd(ctx, d, st)
}

func (x *installer) removeImport(st *containerdcfg.State) error {
	if st.Import == nil {
		return nil
	}
	data, info, err := daemonjson.ReadFile(st.Config)
	if err != nil {
		return err
	}
	out, ok := containerdcfg.RemoveImport(st.Config, data, *st.Import)
	switch {
	case !info.Exists:
	case !ok:
		x.warn(fmt.Sprintf("%s no longer holds the import of %s as kata-deploy added it: remove that import by hand", st.Config, st.DropIn))
	case st.ConfigCreated && len(bytes.TrimSpace(out)) == 0:
		if err := os.Remove(st.Config); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s, which install created: %w", st.Config, err)
		}
	default:
		if err := daemonjson.WriteFileAtomic(st.Config, out, info); err != nil {
			return fmt.Errorf("writing %s: %w", st.Config, err)
		}
	}
	st.Import, st.ConfigCreated, st.RestartNeeded = nil, false, true
	return x.done(StepImportReverted)
}

// containerd finds the containerd of this install.
func (x *installer) containerd(ctx context.Context) (Containerd, error) {
	cfg := x.o.ContainerdConfig
	if x.m != nil && x.m.Containerd != nil {
		cfg = x.m.Containerd.Config
	}
	return x.d.Containerd(ctx, x.o.ContainerdAddress, cfg)
}
