package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/containerdsvc"
	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

// ResultSchemaVersion is the version of the JSON form of Result and UninstallResult.
const ResultSchemaVersion = 1

// Result is what Install did (or, on a dry run, would do).
type Result struct {
	SchemaVersion int    `json:"schemaVersion"`
	DryRun        bool   `json:"dryRun"`
	Changed       bool   `json:"changed"`
	Prefix        string `json:"prefix"`
	RuntimeName   string `json:"runtimeName"`
	// DaemonJSON is the file the runtime is registered in ("" when it is read-only).
	DaemonJSON string   `json:"daemonJSON,omitempty"`
	Actions    []Action `json:"actions"`
	// DaemonJSONDiff is the planned edit as a unified diff (dry run).
	DaemonJSONDiff string `json:"daemonJSONDiff,omitempty"`
	// Stanza is what to add to a read-only daemon.json by hand.
	Stanza      string   `json:"stanza,omitempty"`
	Reloaded    bool     `json:"reloaded"`
	GuestKernel string   `json:"guestKernel,omitempty"`
	Accelerator string   `json:"accelerator,omitempty"`
	Smoke       *Smoke   `json:"smoke,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
	// Version is the id of the version installed (<prefix>/versions/<id>); PreviousVersion the
	// one it replaced as current, kept for `kata-deploy rollback`.
	Version         string `json:"version,omitempty"`
	PreviousVersion string `json:"previousVersion,omitempty"`
	// Switched: this run pointed <prefix>/current at Version.
	Switched bool `json:"switched,omitempty"`
	// SwitchedBack: Version failed its smoke test, and current was switched back to
	// PreviousVersion.
	SwitchedBack bool `json:"switchedBack,omitempty"`
	// Migrated: an install in the flat layout of earlier kata-deploy moved to versions.
	Migrated bool `json:"migrated,omitempty"`
	// Pruned are the versions removed as neither current nor kept for rollback.
	Pruned []string `json:"pruned,omitempty"`
	// Upstream is the version of an upstream release installed with --from, and where it is.
	Upstream    string `json:"upstream,omitempty"`
	UpstreamDir string `json:"upstreamDir,omitempty"`
	// Engine is "docker" or "containerd"; ContainerdConfig the main configuration that imports
	// the drop-in ContainerdDropIn; ContainerdDiff the planned edit of the former (dry run);
	// Containerd what the restart of containerd did.
	Engine           string                 `json:"engine,omitempty"`
	ContainerdConfig string                 `json:"containerdConfig,omitempty"`
	ContainerdDropIn string                 `json:"containerdDropIn,omitempty"`
	ContainerdDiff   string                 `json:"containerdDiff,omitempty"`
	Containerd       *containerdsvc.Restart `json:"containerdRestart,omitempty"`
	// Plugin is the plugin service (install --with-plugins).
	Plugin *PluginResult `json:"plugin,omitempty"`
	// Template: VM templating is on in the version installed ([factory] template = true).
	Template bool `json:"template,omitempty"`
	// Pool is how many clones of the template the version installed keeps waiting
	// ([factory] pool).
	Pool int `json:"pool,omitempty"`
}

// installer carries one Install or Uninstall run.
type installer struct {
	o      options
	d      Deps
	host   Host
	docker Docker
	m      *manifest.Manifest
	res    *Result
	warns  *[]string
	// abandoned: a failed first install removed its manifest again; nothing is saved after.
	abandoned bool
}

func (x *installer) now() time.Time { return x.d.Now() }

func (x *installer) warn(msg string) {
	*x.warns = append(*x.warns, msg)
	if x.o.Warn != nil {
		x.o.Warn(msg)
	}
}

// save writes the manifest (the journal).
func (x *installer) save() error {
	if x.abandoned {
		return nil
	}
	return x.m.Save(x.now())
}

// done journals a finished step, saves, and calls the fault-injection hook.
func (x *installer) done(step string) error {
	x.m.Log(x.now(), step, "done", nil)
	if err := x.save(); err != nil {
		return err
	}
	x.after(step)
	return nil
}

func (x *installer) after(step string) {
	if x.o.AfterStep != nil {
		x.o.AfterStep(step)
	}
}

// Install installs the built-in runtime under o.Prefix and registers it with Docker.
func Install(ctx context.Context, o InstallOptions, d Deps) (*Result, error) {
	return install(ctx, o.options(), d)
}

// install is Install and Upgrade.
func install(ctx context.Context, o options, d Deps) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &Result{SchemaVersion: ResultSchemaVersion, DryRun: o.DryRun, Prefix: o.Prefix, RuntimeName: o.RuntimeName}
	x := &installer{o: o, d: d, res: res, warns: &res.Warnings}
	if err := o.checkTrusted(); err != nil {
		return res, err
	}
	if err := x.preflight(ctx); err != nil {
		return res, err
	}
	loc, disconnect, err := x.connectDocker(ctx)
	defer disconnect()
	if err != nil {
		return res, err
	}
	m, release, err := begin(o)
	defer release()
	if err != nil {
		return res, err
	}
	if err := x.settle(m); err != nil {
		return res, err
	}
	p, err := x.plan(ctx, m, loc)
	if err != nil {
		return res, err
	}
	var pp *pluginPlan
	if o.WithPlugins {
		if pp, err = x.planPlugin(ctx, m); err != nil {
			return res, err
		}
	}
	x.report(p, m)
	if pp != nil {
		res.Actions = append(res.Actions, pp.actions()...)
	}
	if o.DryRun {
		return res, nil
	}
	if err := x.execute(ctx, p, m); err != nil || pp == nil {
		return res, err
	}
	return res, x.applyPlugin(ctx, pp)
}

// preflight runs the checks of `kata-deploy check` that matter to this install. An upgrade
// without an install says so first, and takes the engine the install recorded.
func (x *installer) preflight(ctx context.Context) error {
	if _, err := os.Stat(manifest.Path(x.o.Prefix)); x.o.upgrade && errors.Is(err, fs.ErrNotExist) {
		return x.checkExisting(nil) // before the preflight: say the obvious first
	}
	if x.o.upgrade {
		if m, err := loadManifest(x.o.Prefix); err == nil && m != nil {
			x.o.Engine = optionsEngine(m) // before the preflight, which depends on it
		}
	}
	x.res.Engine = x.o.Engine
	x.o.progress("preflight: kata-deploy check")
	x.host = x.d.Preflight(ctx)
	if failed := blockingFailures(&x.host.Report, x.o.Engine, x.o.From != ""); len(failed) > 0 {
		return preflightError(failed)
	}
	x.res.Accelerator = x.host.Report.Accelerator
	return nil
}

// connectDocker connects to Docker when the runtime is registered with it, and finds the
// daemon.json it reads; disconnect closes the connection.
func (x *installer) connectDocker(ctx context.Context) (loc dockerd.ConfigLocation, disconnect func(), err error) {
	disconnect = func() {}
	if x.o.Engine != EngineDocker {
		return loc, disconnect, nil
	}
	docker, loc, err := x.d.Docker(ctx)
	if err != nil {
		return loc, disconnect, err
	}
	x.docker = docker
	return loc, func() { _ = docker.Close() }, nil
}

// settle refuses what this run cannot do with the install there (m, nil for none), settles
// what a killed run left journaled, and has an upgrade keep what the install chose.
func (x *installer) settle(m *manifest.Manifest) error {
	if err := x.checkExisting(m); err != nil {
		return err
	}
	if err := x.checkEngine(m); err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	if err := reconcileContainerd(m); err != nil {
		return err
	}
	if x.o.upgrade {
		x.o.RuntimeName, x.o.SetDefaultRuntime = m.RuntimeName, m.Default
		x.res.RuntimeName = m.RuntimeName
	}
	if m.RuntimeName != x.o.RuntimeName {
		return fmt.Errorf("%s holds an install of runtime %q, not %q: use --runtime-name %s, or uninstall it first", x.o.Prefix, m.RuntimeName, x.o.RuntimeName, m.RuntimeName)
	}
	if m.DaemonJSON != nil {
		return registration.Reconcile(m.DaemonJSON)
	}
	return nil
}

// report fills the result with the plan.
func (x *installer) report(p *plan, m *manifest.Manifest) {
	x.res.Actions = p.actions(x.o)
	x.warnModified(p)
	p.engine.report(x.res)
	p.artifacts.report(x.res)
	if v := versionOf(m, p.layout.Version); v != nil && v.Image != nil && !p.image.Needed {
		x.res.GuestKernel = v.Image.KernelVersion
	}
}

// warnModified reports the installed files the user changed, which the install leaves alone.
func (x *installer) warnModified(p *plan) {
	files := append([]fileAction{p.shim, p.config}, p.image.Files...)
	files = append(files, p.engine.files()...)
	for _, f := range files {
		if f.State == fileModified {
			x.warn(fmt.Sprintf("%s was changed since kata-deploy installed it; left as is (pass --replace-modified or --force to replace it)", f.Path))
		}
	}
}

// begin starts every command that changes an install: it takes the lock that serialises them
// (not for a dry run, which changes nothing) and loads the manifest, the journal of the runs
// before, settling what a killed one left journaled. release gives the lock back.
func begin(o options) (m *manifest.Manifest, release func(), err error) {
	release = func() {}
	if !o.DryRun {
		lock, err := manifest.Acquire(o.LockPath)
		if err != nil {
			return nil, release, err
		}
		release = func() { _ = lock.Release() }
	}
	m, err = loadManifest(o.Prefix)
	return m, release, err
}

// loadManifest reads the manifest of prefix (nil when there is none) and settles a switch of
// current that a killed run left journaled.
func loadManifest(prefix string) (*manifest.Manifest, error) {
	m, err := manifest.Load(prefix)
	if errors.Is(err, manifest.ErrNotInstalled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := reconcileSwitch(m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkExisting refuses what this run cannot do with the install already there.
func (x *installer) checkExisting(m *manifest.Manifest) error {
	switch {
	case m == nil && x.o.upgrade:
		return fmt.Errorf("nothing to upgrade: kata-deploy is not installed under %s (run `kata-deploy install`)", x.o.Prefix)
	case m != nil && x.o.upgrade && m.Source == manifest.SourceUpstream:
		return fmt.Errorf("the install under %s is an upstream Kata release, which is not upgraded in place: `kata-deploy uninstall`, then `kata-deploy install --from` the new release", x.o.Prefix)
	case m != nil && x.o.From == "" && m.Source == manifest.SourceUpstream:
		from := "an upstream Kata release"
		if m.Upstream != nil {
			from = m.Upstream.Tarball
		}
		return fmt.Errorf("%s holds an upstream Kata release (%s): pass the same --from, or uninstall it first", x.o.Prefix, from)
	}
	return nil
}

// plan computes the plan of the built-in runtime or of an upstream release.
func (x *installer) plan(ctx context.Context, m *manifest.Manifest, loc dockerd.ConfigLocation) (*plan, error) {
	if m != nil {
		reconcileUpstream(m)
	}
	if x.o.From != "" {
		return x.makeUpstreamPlan(ctx, m, loc)
	}
	in, err := x.resolveInputs(ctx, m)
	if err != nil {
		return nil, err
	}
	return x.makePlan(ctx, m, loc, in)
}

func versionOf(m *manifest.Manifest, id string) *manifest.Version {
	if m == nil {
		return nil
	}
	return m.FindVersion(id)
}

// blockingFailures are the failed checks that stop this install: Docker's do not matter when the
// runtime is registered with containerd, nor the host's QEMU for an upstream release, which
// brings its own.
func blockingFailures(r *check.Report, engine string, upstreamRelease bool) []check.Line {
	var failed []check.Line
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			ignored := (engine == EngineContainerd && strings.HasPrefix(l.ID, "docker.")) ||
				(upstreamRelease && strings.HasPrefix(l.ID, "hypervisor."))
			if l.Status == check.Fail && !ignored {
				failed = append(failed, l)
			}
		}
	}
	if len(failed) == 0 && !r.CanRunVMContainers && engine == EngineDocker && !upstreamRelease {
		failed = append(failed, check.Line{Name: "preflight", Value: "the host cannot run VM containers", Remedy: "run `kata-deploy check`"})
	}
	return failed
}

func preflightError(failed []check.Line) error {
	var lines []string
	for _, l := range failed {
		lines = append(lines, fmt.Sprintf("%s: %s -> %s", l.Name, l.Value, l.Remedy))
	}
	return fmt.Errorf("%w (kata-deploy check): %s", ErrPreflight, strings.Join(lines, "; "))
}

// execute carries out the plan, journaling every step.
func (x *installer) execute(ctx context.Context, p *plan, m *manifest.Manifest) error {
	if m != nil && m.State == manifest.StateInstalled && !p.changes() {
		x.m = m
		return p.engine.ensure(ctx, x, p)
	}
	x.res.Changed = true
	if err := x.startManifest(m, p); err != nil {
		return err
	}
	for _, step := range p.artifacts.steps(x) {
		if err := step(ctx, p); err != nil {
			x.m.Log(x.now(), "install", "failed", err)
			_ = x.save()
			return err
		}
	}
	if err := p.engine.apply(ctx, x, p); err != nil {
		x.m.Log(x.now(), "register", "failed", err)
		_ = x.save()
		return err
	}
	x.m.State = manifest.StateInstalled
	if err := x.done(StepInstalled); err != nil {
		return err
	}
	if err := p.engine.verify(ctx, x, p); err != nil {
		return err
	}
	return x.prune()
}

// switchBack points current back at the version this run switched away from, after the new one
// failed its smoke test. The failed version stays on disk until the next run prunes it.
func (x *installer) switchBack(p *plan, smokeErr error) error {
	if !p.switchTo || p.from == "" || p.from == p.layout.Version {
		return smokeErr
	}
	if err := versionFilesIntact(x.m, p.from); err != nil {
		return fmt.Errorf("%w; the version before (%s) cannot be switched back to: %v", smokeErr, p.from, err)
	}
	if err := x.switchCurrent(p.from, p.oldPrevious, StepSwitchedBack); err != nil {
		return fmt.Errorf("%w; switching back to %s failed too: %v", smokeErr, p.from, err)
	}
	x.res.SwitchedBack = true
	return fmt.Errorf("switched back to version %s, which is in use again; the new version stays in %s until the next install or upgrade: %w",
		p.from, p.layout.Root(), smokeErr)
}

// startManifest creates the prefix and the record, or marks an existing record as installing.
func (x *installer) startManifest(m *manifest.Manifest, p *plan) error {
	if m == nil {
		created := slices.Contains(p.newDirs, p.layout.Prefix) || p.adoptPrefix
		if err := os.MkdirAll(p.layout.Prefix, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", p.layout.Prefix, err)
		}
		if err := checkTrustedDir("--prefix", p.layout.Prefix); err != nil { // made by someone else meanwhile?
			return err
		}
		m = manifest.New(x.o.Prefix, x.o.RuntimeName, x.o.Version, x.now())
		m.Engine = manifestEngine(x.o.Engine)
		if x.o.From != "" {
			m.Source = manifest.SourceUpstream
		}
		if created {
			m.AddDir(p.layout.Prefix)
		}
	}
	if !m.Versioned() && m.Source != manifest.SourceUpstream {
		// The flat layout's files stay recorded, and in use, until the new version is; then
		// prune removes them.
		m.Layout, m.SchemaVersion = manifest.LayoutVersioned, manifest.SchemaVersion
		x.res.Migrated = true
	}
	x.m = m
	m.State, m.Version = manifest.StateInstalling, x.o.Version
	m.Default = m.Default || x.o.SetDefaultRuntime
	return x.done(StepPrefix)
}

func (x *installer) makeDirs(_ context.Context, p *plan) error {
	var todo []string
	for _, d := range p.newDirs {
		if d != p.layout.Prefix {
			todo = append(todo, d)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	for _, d := range todo {
		x.m.AddDir(d) // journaled before it exists, so uninstall knows it
	}
	if err := x.save(); err != nil {
		return err
	}
	for _, d := range todo {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return x.done(StepDirs)
}

// startVersion records the version being installed, before its first file.
func (x *installer) startVersion(_ context.Context, p *plan) error {
	if x.m.FindVersion(p.layout.Version) != nil {
		return nil
	}
	x.m.PutVersion(manifest.Version{ID: p.layout.Version, Created: x.now().UTC(), KataDeployVersion: x.o.Version,
		Factory: p.settings.factoryRecord()})
	return x.save()
}

// finishVersion marks the version ready: every file is in place, it may be switched to.
func (x *installer) finishVersion(_ context.Context, p *plan) error {
	v := x.m.FindVersion(p.layout.Version)
	if v.Ready {
		return nil
	}
	v.Ready = true
	return x.save()
}

// switchVersion points current at the new version.
func (x *installer) switchVersion(_ context.Context, p *plan) error {
	if !p.switchTo && x.m.Current == p.layout.Version {
		return nil
	}
	if p.from != p.layout.Version {
		x.res.PreviousVersion = p.from
	}
	x.res.Switched = true
	x.o.progress(fmt.Sprintf("switching %s to %s", p.layout.CurrentLink(), versionTarget(p.layout.Version)))
	return x.switchCurrent(p.layout.Version, p.previous, StepSwitched)
}

func (x *installer) installShim(_ context.Context, p *plan) error {
	return x.putFile(p.shim, StepShim)
}

func (x *installer) writeConfig(_ context.Context, p *plan) error {
	x.recordRuntimeDirs(p.settings.stateDir())
	if writes(p.config) || p.config.State == fileForeign {
		if err := checkRuntimeConfig(p.config.Data, p.config.Path); err != nil {
			return err
		}
	}
	return x.putFile(p.config, StepConfig)
}

// putFile writes one planned file: journal the content about to be written, write it
// atomically, record it as written.
func (x *installer) putFile(f fileAction, step string) error {
	switch f.State {
	case fileSame:
		x.settleRecord(f.Path, f.SHA256)
		return nil
	case fileCreate, fileUpdate, fileForeign:
	default:
		return nil
	}
	rec := x.m.File(f.Path)
	if rec == nil {
		rec = &manifest.File{Path: f.Path}
	}
	r := *rec
	r.PendingSHA256, r.Mode = f.SHA256, f.Mode
	if f.State == fileForeign {
		r.Previous = &manifest.Previous{SHA256: f.Cur, SavedAs: f.Path + ".kata-deploy-orig-" + x.now().UTC().Format("20060102T150405Z")}
	}
	x.m.PutFile(r)
	if err := x.save(); err != nil {
		return err
	}
	if f.State == fileForeign {
		if err := renameSynced(f.Path, r.Previous.SavedAs); err != nil {
			return fmt.Errorf("moving %s aside: %w", f.Path, err)
		}
	}
	if err := writeAtomic(f.Path, f.Data, f.Src, f.Mode, f.SHA256); err != nil {
		return err
	}
	r.SHA256, r.Size, r.PendingSHA256 = f.SHA256, f.Size, ""
	x.m.PutFile(r)
	return x.done(step)
}

// settleRecord completes the record of a file whose write finished but was not recorded.
func (x *installer) settleRecord(path, sha string) {
	if rec := x.m.File(path); rec != nil && rec.SHA256 != sha {
		rec.SHA256, rec.PendingSHA256 = sha, ""
	}
}

// register edits daemon.json, reloads Docker and checks it, rolling back on failure.
func (x *installer) register(ctx context.Context, r *dockerReg, p *plan) error {
	if x.m.DaemonJSON == nil {
		x.m.DaemonJSON = &registration.State{}
	}
	reg := &registration.Registrar{
		Daemon:     x.docker,
		Save:       func(*registration.State) error { return x.save() },
		Checkpoint: x.after,
		Warn:       x.warn,
		Now:        x.d.Now,
	}
	// Planned again now: building the image takes a while, and daemon.json may have been edited
	// meanwhile; the early plan only served to refuse a bad file before anything was installed.
	edit, err := x.planEdit(r.daemonJSON, x.m, p.entry())
	if err != nil {
		return fmt.Errorf("%w; daemon.json was not changed", err)
	}
	r.edit = edit
	if len(r.edit.Changes) > 0 {
		x.o.progress(fmt.Sprintf("registering runtime %q in %s and reloading Docker", x.o.RuntimeName, r.daemonJSON))
		x.res.Reloaded = true
	} else if loaded, err := x.runtimeLoaded(ctx); err != nil || !loaded {
		x.res.Reloaded = true
	}
	if err := reg.Register(ctx, x.m.DaemonJSON, r.edit, x.o.RuntimeName, x.o.SetDefaultRuntime); err != nil {
		return err
	}
	return x.done(StepRegistered)
}

func (x *installer) runtimeLoaded(ctx context.Context) (bool, error) {
	names, def, err := x.docker.Runtimes(ctx)
	if err != nil {
		return false, fmt.Errorf("asking Docker for its runtimes: %w", err)
	}
	return slices.Contains(names, x.o.RuntimeName) && (!x.o.SetDefaultRuntime || def == x.o.RuntimeName), nil
}
