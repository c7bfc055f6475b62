package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Action is one thing an install does (or, with --dry-run, would do).
type Action struct {
	// Op is one of: mkdir, create, update, replace, keep, fetch-kernel, build-image, copy-image, switch,
	// edit-daemon-json, reload-docker, print-stanza, smoke-test, remove-version,
	// remove-flat-layout.
	Op     string `json:"op"`
	Target string `json:"target"`
	Detail string `json:"detail,omitempty"`
}

// source is an input file and its checksum.
type source struct {
	Path   string
	SHA256 string
	Size   int64
}

// fileState is how a file under the prefix relates to what the install wants there.
type fileState string

const (
	fileCreate    fileState = "create"    // absent
	fileUpdate    fileState = "update"    // kata-deploy's, unmodified, and the content changes
	fileSame      fileState = "unchanged" // already the wanted content
	fileModified  fileState = "modified"  // kata-deploy's, edited since: kept unless --force
	fileForeign   fileState = "foreign"   // not kata-deploy's: refused unless --force
	fileRebuild   fileState = "rebuild"   // an image file to be replaced by a new build
	fileUntouched fileState = ""          // nothing to do
)

// fileAction is a file the install writes.
type fileAction struct {
	Path   string
	Mode   fs.FileMode
	Data   []byte // the content, or
	Src    string // a file to copy
	SHA256 string
	Size   int64
	State  fileState
	Cur    string // checksum of what is there now ("" when absent)
}

// imagePlan says whether the guest image is (re)built and from what.
type imagePlan struct {
	Needed bool
	Fetch  bool    // the kernel package must be fetched first (dry run only)
	Kernel *source // nil when it must be fetched
	Agent  source
	Key    string
	Files  []fileAction // vmlinux, initrd.img, image-manifest.json as they are now
	reuse  string       // the directory of an intact image built from the same inputs, copied instead
}

// plan is everything an install will do, computed before anything changes.
type plan struct {
	layout      layout.Layout // the version installed
	newDirs     []string
	adoptPrefix bool // an empty prefix without a manifest: left by a run killed right after mkdir
	// artifacts are where the runtime comes from: &builtinPlan, or upstream.
	artifacts artifacts
	builtinPlan
	upstream *upstreamPlan // --from
	engine   engine        // the registration
}

// builtinPlan is the install of kata-deploy's own runtime as a version of the versioned layout.
type builtinPlan struct {
	shim   fileAction
	config fileAction
	// settings are what the configuration is written with.
	settings configSettings
	image    imagePlan
	// from is the current version before this run ("" for none); switchTo says current must be
	// (re)pointed at layout.Version, and previous is the version rollback returns to afterwards.
	from        string
	switchTo    bool
	previous    string
	oldPrevious string // the previous version before this run (for a switch back)
	// migrate: the install is in the flat layout of schema 1 and moves to the versioned one.
	migrate bool
	// pruneVersions and pruneFlat are what is removed once the new version is in use.
	pruneVersions []string
	pruneFlat     []string
}

// changes reports whether the plan writes anything.
func (p *plan) changes() bool {
	return len(p.newDirs) > 0 || p.adoptPrefix || p.artifacts.changes() || p.engine.changes()
}

func writes(f fileAction) bool {
	switch f.State {
	case fileCreate, fileUpdate, fileRebuild:
		return true
	}
	return false
}

// stateOf compares the file at path with the manifest's record and the wanted checksum.
func stateOf(m *manifest.Manifest, path, want string, replace Replace) (fileState, string, error) {
	cur, _, err := fileSum(path)
	if err != nil {
		return "", "", err
	}
	var rec *manifest.File
	if m != nil {
		rec = m.File(path)
	}
	switch {
	case cur == "":
		return fileCreate, cur, nil
	case rec == nil && replace.Foreign:
		return fileForeign, cur, nil
	case rec == nil:
		return "", cur, fmt.Errorf("%s exists and kata-deploy did not install it: move it away, choose another --prefix, or pass --replace-foreign (or --force) to replace it (it is kept aside and restored by uninstall)", path)
	case cur == want:
		return fileSame, cur, nil
	case rec.Owns(cur):
		return fileUpdate, cur, nil
	case replace.Modified:
		return fileForeign, cur, nil
	}
	return fileModified, cur, nil
}

// planFile fills in the state of a file action.
func planFile(m *manifest.Manifest, f fileAction, replace Replace) (fileAction, error) {
	st, cur, err := stateOf(m, f.Path, f.SHA256, replace)
	f.State, f.Cur = st, cur
	return f, err
}

// planImage decides whether the guest image must be built: its inputs changed, or a file of it
// is missing or not recorded as complete.
func planImage(m *manifest.Manifest, built *manifest.Image, l layout.Layout, kernel *source, agent source, replace Replace) (imagePlan, error) {
	ip := imagePlan{Kernel: kernel, Agent: agent, Fetch: kernel == nil}
	if kernel != nil {
		ip.Key = imageKey(kernel.SHA256, agent.SHA256)
	}
	ip.Needed = ip.Fetch || built == nil || built.Key != ip.Key
	var modified []string
	for _, path := range []string{l.Vmlinux(), l.Initrd(), l.ImageManifest()} {
		cur, _, err := fileSum(path)
		if err != nil {
			return ip, err
		}
		f := fileAction{Path: path, Cur: cur, State: fileRebuild}
		var rec *manifest.File
		if m != nil {
			rec = m.File(path)
		}
		switch {
		case cur == "":
			ip.Needed = true
		case rec == nil:
			if !replace.Foreign {
				return ip, fmt.Errorf("%s exists and kata-deploy did not install it: move it away, choose another --prefix, or pass --replace-foreign (or --force) to replace it", path)
			}
			f.State, ip.Needed = fileForeign, true
		case cur == rec.SHA256 && rec.PendingSHA256 == "":
		case rec.Owns(cur):
			ip.Needed = true // a build was interrupted between the renames and the record
		default:
			f.State = fileModified
			modified = append(modified, path)
		}
		ip.Files = append(ip.Files, f)
	}
	if len(modified) > 0 && !replace.Modified {
		if ip.Needed {
			return ip, fmt.Errorf("%v changed since kata-deploy installed them and the guest image must be rebuilt: pass --replace-modified (or --force) to replace them", modified)
		}
	}
	if replace.Modified && len(modified) > 0 {
		ip.Needed = true
	}
	if !ip.Needed {
		for i := range ip.Files {
			if ip.Files[i].State == fileRebuild {
				ip.Files[i].State = fileSame
			}
		}
	}
	return ip, nil
}

// imageKey identifies the inputs of a guest image.
func imageKey(kernelSHA, agentSHA string) string {
	return bytesSum([]byte("guestimage\nkernel " + kernelSHA + "\nagent " + agentSHA + "\n"))
}

// planDirs lists the layout's directories that do not exist yet.
func planDirs(l layout.Layout) ([]string, error) {
	var dirs []string
	for _, d := range l.Dirs() {
		fi, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			dirs = append(dirs, d)
		case err != nil:
			return nil, err
		case !fi.IsDir():
			return nil, fmt.Errorf("%s exists and is not a directory: move it away or choose another --prefix", d)
		}
	}
	return dirs, nil
}

// planDaemonJSON chooses the daemon.json to edit and computes the edit.
func (x *installer) planDaemonJSON(p *plan, m *manifest.Manifest, loc dockerd.ConfigLocation) (engine, error) {
	path, readOnly := loc.Path, ""
	switch {
	case x.o.DaemonJSON != "" && loc.Path != "" && x.o.DaemonJSON != loc.Path:
		return nil, fmt.Errorf("the running dockerd reads %s (%s), not %s: a runtime registered there would never be loaded; drop --daemon-json, or restart dockerd with --config-file %s",
			loc.Path, loc.Why, x.o.DaemonJSON, x.o.DaemonJSON)
	case x.o.DaemonJSON != "":
		path = x.o.DaemonJSON
	case loc.ReadOnly || loc.Path == "":
		readOnly = loc.Why
	}
	if readOnly != "" {
		return &stanzaReg{why: readOnly, stanza: registration.Stanza(x.o.RuntimeName, p.entry(), x.o.SetDefaultRuntime)}, nil
	}
	if m != nil && m.DaemonJSON.Registered() && m.DaemonJSON.Path != path {
		return nil, fmt.Errorf("an earlier install registered the runtime in %s, but dockerd now reads %s: run `kata-deploy uninstall` first", m.DaemonJSON.Path, path)
	}
	edit, err := x.planEdit(path, m, p.entry())
	if err != nil {
		return nil, fmt.Errorf("%w; nothing was changed", err)
	}
	return &dockerReg{daemonJSON: path, edit: edit}, nil
}

// entry is the daemon.json runtime entry of the plan.
func (p *plan) entry() daemonjson.Runtime {
	return registration.Entry(p.artifacts.entryShim(p), p.artifacts.entryConfig(p))
}

// planEdit computes the registration edit of path. An entry of the runtime that kata-deploy
// itself wrote (the flat layout's, before a migration) is replaced without --force.
func (x *installer) planEdit(path string, m *manifest.Manifest, entry daemonjson.Runtime) (*registration.Edit, error) {
	force := x.o.Replace.RuntimeEntry
	if !force && m != nil {
		own, err := ownsEntry(path, m.DaemonJSON, x.o.RuntimeName)
		if err != nil {
			return nil, err
		}
		force = own
	}
	return registration.PlanRegister(path, x.o.RuntimeName, entry, x.o.SetDefaultRuntime, force)
}

// ownsEntry reports whether the runtime's entry in the daemon.json at path is one kata-deploy
// recorded writing.
func ownsEntry(path string, st *registration.State, name string) (bool, error) {
	if !st.Registered() {
		return false, nil
	}
	data, _, err := daemonjson.ReadFile(path)
	if err != nil {
		return false, err
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	cur, ok := doc.Runtime(name)
	if !ok {
		return false, nil
	}
	changes := append(slices.Clone(st.Changes), pendingChanges(st)...)
	for _, c := range changes {
		if c.Key == "/runtimes/"+name && c.After != nil && sameJSON(cur, c.After) {
			return true, nil
		}
	}
	return false, nil
}

func pendingChanges(st *registration.State) []daemonjson.Change {
	if st.Pending == nil {
		return nil
	}
	return st.Pending.Changes
}

// makePlan computes the whole plan. Nothing is written.
func (x *installer) makePlan(ctx context.Context, m *manifest.Manifest, loc dockerd.ConfigLocation, in inputs) (*plan, error) {
	p := &plan{}
	p.artifacts = &p.builtinPlan
	if err := x.planVersion(p, m, in); err != nil {
		return nil, err
	}
	l := p.layout
	var err error
	if p.newDirs, err = planDirs(l); err != nil {
		return nil, err
	}
	p.adoptPrefix = m == nil && isEmptyDir(l.Prefix)
	shim := fileAction{Path: l.Shim(), Mode: 0o755, Src: in.shim.Path, SHA256: in.shim.SHA256, Size: in.shim.Size}
	if p.shim, err = planFile(m, shim, x.o.Replace); err != nil {
		return nil, err
	}
	var built *manifest.Image
	if m != nil {
		if v := m.FindVersion(l.Version); v != nil {
			built = v.Image
		}
	}
	if p.image, err = planImage(m, built, l, in.kernel, in.agent, x.o.Replace); err != nil {
		return nil, err
	}
	if src, img := reusableImage(m, p.image.Key, l.Version); img != nil {
		p.image.reuse = src.ImageDir()
	}
	cfg, err := runtimeConfig(x.host, l, p.settings)
	if err != nil {
		return nil, err
	}
	config := fileAction{Path: l.Config(), Mode: 0o644, Data: cfg, SHA256: bytesSum(cfg), Size: int64(len(cfg))}
	if p.config, err = planFile(m, config, x.o.Replace); err != nil {
		return nil, err
	}
	if p.engine, err = x.planEngine(ctx, p, m, loc); err != nil {
		return nil, err
	}
	return p, ctx.Err()
}

// planVersion names the version the inputs make, and decides the switch of current and what is
// pruned once it is in use.
func (x *installer) planVersion(p *plan, m *manifest.Manifest, in inputs) error {
	var err error
	if p.settings, err = x.configSettings(m); err != nil {
		return err
	}
	canonical, err := runtimeConfig(x.host, layout.Layout{Prefix: "/", Version: "@"}, p.settings)
	if err != nil {
		return err
	}
	id := "new" // a dry run without the kernel package cannot know it
	if in.kernel != nil {
		id = versionID(in.shim.SHA256, imageKey(in.kernel.SHA256, in.agent.SHA256), bytesSum(canonical))
	}
	p.layout = layout.Layout{Prefix: x.o.Prefix, Version: id}
	x.res.Version = id
	target, err := readCurrent(x.o.Prefix)
	if err != nil {
		return err
	}
	if target != "" && (m == nil || m.Link(p.layout.CurrentLink()) == nil || !m.Link(p.layout.CurrentLink()).Owns(target)) {
		return fmt.Errorf("%s exists and kata-deploy did not create it: move it away, or choose another --prefix", p.layout.CurrentLink())
	}
	p.switchTo = target != versionTarget(id) || (m != nil && m.Current != id)
	if m == nil {
		return nil
	}
	p.migrate = !m.Versioned()
	if m.Versioned() {
		p.from = m.Current
	}
	p.previous, p.oldPrevious = m.Previous, m.Previous
	if p.switchTo && p.from != "" && p.from != id {
		p.previous = p.from
	}
	if p.previous == id {
		p.previous = ""
	}
	p.pruneVersions, p.pruneFlat = pruneCandidates(m, id, p.previous)
	if p.switchTo && p.from != "" && p.from != id {
		x.warnConfigNotCarried(m, p.from)
	}
	return nil
}

// warnConfigNotCarried tells the user that their edits of the current version's configuration do
// not follow into the new version.
func (x *installer) warnConfigNotCarried(m *manifest.Manifest, from string) {
	cfg := layout.Layout{Prefix: m.Prefix, Version: from}.Config()
	rec := m.File(cfg)
	if rec == nil {
		return
	}
	if cur, _, err := fileSum(cfg); err == nil && cur != "" && !rec.Owns(cur) {
		x.warn(fmt.Sprintf("%s was changed since install; the new version gets a fresh configuration: carry your changes over to %s", cfg, layout.Layout{Prefix: m.Prefix, Version: x.res.Version}.Config()))
	}
}

// actions renders the plan for the user (and --dry-run).
func (p *plan) actions(o options) []Action {
	var as []Action
	for _, d := range p.newDirs {
		as = append(as, Action{Op: "mkdir", Target: d})
	}
	as = append(as, p.artifacts.actions(p, o)...)
	as = append(as, p.engine.actions(p, o)...)
	return append(as, p.artifacts.cleanupActions(p)...)
}

func fileActions(f fileAction, what string) []Action {
	switch f.State {
	case fileCreate:
		return []Action{{Op: "create", Target: f.Path, Detail: what}}
	case fileUpdate:
		return []Action{{Op: "update", Target: f.Path, Detail: what + " (new content)"}}
	case fileForeign:
		return []Action{{Op: "replace", Target: f.Path, Detail: what + "; the file there now is kept aside (--replace-foreign or --force)"}}
	case fileModified:
		return []Action{{Op: "keep", Target: f.Path, Detail: "changed since install; left as is (--replace-modified or --force replaces it)"}}
	}
	return nil
}
