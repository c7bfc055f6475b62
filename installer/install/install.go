package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
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
}

// installer carries one Install or Uninstall run.
type installer struct {
	o      Options
	d      Deps
	host   Host
	docker Docker
	m      *manifest.Manifest
	res    *Result
	warns  *[]string
}

func (x *installer) now() time.Time { return x.d.Now() }

func (x *installer) warn(msg string) {
	*x.warns = append(*x.warns, msg)
	if x.o.Warn != nil {
		x.o.Warn(msg)
	}
}

// save writes the manifest (the journal).
func (x *installer) save() error { return x.m.Save(x.now()) }

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
func Install(ctx context.Context, o Options, d Deps) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &Result{SchemaVersion: ResultSchemaVersion, DryRun: o.DryRun, Prefix: o.Prefix, RuntimeName: o.RuntimeName}
	x := &installer{o: o, d: d, res: res, warns: &res.Warnings}
	x.o.progress("preflight: kata-deploy check")
	x.host = d.Preflight(ctx)
	if !x.host.Report.CanRunVMContainers {
		return res, preflightError(&x.host.Report)
	}
	res.Accelerator = x.host.Report.Accelerator
	docker, loc, err := d.Docker(ctx)
	if err != nil {
		return res, err
	}
	defer docker.Close()
	x.docker = docker
	if !o.DryRun {
		lock, err := manifest.Acquire(o.LockPath)
		if err != nil {
			return res, err
		}
		defer lock.Release()
	}
	m, err := loadManifest(o.Prefix)
	if err != nil {
		return res, err
	}
	if m != nil && m.RuntimeName != o.RuntimeName {
		return res, fmt.Errorf("%s holds an install of runtime %q, not %q: use --runtime-name %s, or uninstall it first", o.Prefix, m.RuntimeName, o.RuntimeName, m.RuntimeName)
	}
	if m != nil && m.DaemonJSON != nil {
		if err := registration.Reconcile(m.DaemonJSON); err != nil {
			return res, err
		}
	}
	in, err := x.resolveInputs(ctx, m)
	if err != nil {
		return res, err
	}
	p, err := x.makePlan(ctx, m, loc, in)
	if err != nil {
		return res, err
	}
	res.Actions, res.DaemonJSON, res.Stanza = p.actions(x.o), p.daemonJSON, p.stanza
	x.warnModified(p)
	if p.edit != nil {
		res.DaemonJSONDiff = p.edit.Diff()
	}
	if m != nil && m.Image != nil && !p.image.Needed {
		res.GuestKernel = m.Image.KernelVersion
	}
	if o.DryRun {
		return res, nil
	}
	return res, x.execute(ctx, p, m)
}

// warnModified reports the installed files the user changed, which the install leaves alone.
func (x *installer) warnModified(p *plan) {
	files := append([]fileAction{p.shim, p.config}, p.image.Files...)
	for _, f := range files {
		if f.State == fileModified {
			x.warn(fmt.Sprintf("%s was changed since kata-deploy installed it; left as is (pass --force to replace it)", f.Path))
		}
	}
}

func loadManifest(prefix string) (*manifest.Manifest, error) {
	m, err := manifest.Load(prefix)
	if errors.Is(err, manifest.ErrNotInstalled) {
		return nil, nil
	}
	return m, err
}

func preflightError(r *check.Report) error {
	var lines []string
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			if l.Status == check.Fail {
				lines = append(lines, fmt.Sprintf("%s: %s -> %s", l.Name, l.Value, l.Remedy))
			}
		}
	}
	return fmt.Errorf("%w (kata-deploy check): %s", ErrPreflight, strings.Join(lines, "; "))
}

// execute carries out the plan, journaling every step.
func (x *installer) execute(ctx context.Context, p *plan, m *manifest.Manifest) error {
	if m != nil && m.State == manifest.StateInstalled && !p.changes() {
		x.m = m
		return x.ensureRegistered(ctx, p)
	}
	x.res.Changed = true
	if err := x.startManifest(m, p); err != nil {
		return err
	}
	steps := []func(context.Context, *plan) error{x.makeDirs, x.installShim, x.buildImage, x.writeConfig}
	for _, step := range steps {
		if err := step(ctx, p); err != nil {
			x.m.Log(x.now(), "install", "failed", err)
			_ = x.save()
			return err
		}
	}
	if p.readOnly != "" {
		x.warn(fmt.Sprintf("daemon.json is not written (%s): add the stanza below to the daemon's configuration, then reload Docker", p.readOnly))
		x.m.State = manifest.StateInstalled
		return x.done(StepInstalled)
	}
	if err := x.register(ctx, p); err != nil {
		x.m.Log(x.now(), "register", "failed", err)
		_ = x.save()
		return err
	}
	x.m.State = manifest.StateInstalled
	if err := x.done(StepInstalled); err != nil {
		return err
	}
	err := x.smoke(ctx)
	x.after(StepSmoke)
	return err
}

// startManifest creates the prefix and the record, or marks an existing record as installing.
func (x *installer) startManifest(m *manifest.Manifest, p *plan) error {
	if m == nil {
		created := slices.Contains(p.newDirs, p.layout.Prefix) || p.adoptPrefix
		if err := os.MkdirAll(p.layout.Prefix, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", p.layout.Prefix, err)
		}
		m = manifest.New(x.o.Prefix, x.o.RuntimeName, x.o.Version, x.now())
		if created {
			m.AddDir(p.layout.Prefix)
		}
	}
	x.m = m
	m.State, m.Version = manifest.StateInstalling, x.o.Version
	m.Default = m.Default || x.o.Default
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

func (x *installer) installShim(_ context.Context, p *plan) error {
	return x.putFile(p.shim, StepShim)
}

func (x *installer) writeConfig(_ context.Context, p *plan) error {
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
func (x *installer) register(ctx context.Context, p *plan) error {
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
	edit, err := registration.PlanRegister(p.daemonJSON, x.o.RuntimeName, registration.Entry(p.layout.Shim(), p.layout.Config()), x.o.Default, x.o.Force)
	if err != nil {
		return fmt.Errorf("%w; daemon.json was not changed", err)
	}
	p.edit = edit
	if len(p.edit.Changes) > 0 {
		x.o.progress(fmt.Sprintf("registering runtime %q in %s and reloading Docker", x.o.RuntimeName, p.daemonJSON))
		x.res.Reloaded = true
	} else if loaded, err := x.runtimeLoaded(ctx); err != nil || !loaded {
		x.res.Reloaded = true
	}
	if err := reg.Register(ctx, x.m.DaemonJSON, p.edit, x.o.RuntimeName, x.o.Default); err != nil {
		return err
	}
	return x.done(StepRegistered)
}

// ensureRegistered is the whole of a rerun with nothing to change: the daemon must still list
// the runtime (a run killed after the write and before the reload left it unloaded).
func (x *installer) ensureRegistered(ctx context.Context, p *plan) error {
	if p.readOnly != "" {
		return nil
	}
	loaded, err := x.runtimeLoaded(ctx)
	if err != nil {
		return err
	}
	if loaded {
		return nil
	}
	x.res.Changed = true
	return x.register(ctx, p)
}

func (x *installer) runtimeLoaded(ctx context.Context) (bool, error) {
	names, def, err := x.docker.Runtimes(ctx)
	if err != nil {
		return false, fmt.Errorf("asking Docker for its runtimes: %w", err)
	}
	return slices.Contains(names, x.o.RuntimeName) && (!x.o.Default || def == x.o.RuntimeName), nil
}
