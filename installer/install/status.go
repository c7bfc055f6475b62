package install

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// StatusSchemaVersion is the version of Status's JSON form; fields are only added while it is 1.
const StatusSchemaVersion = 1

// Status is the state of an install, as `kata-deploy status` reports it.
type Status struct {
	SchemaVersion int    `json:"schemaVersion"`
	Prefix        string `json:"prefix"`
	Installed     bool   `json:"installed"`
	// Healthy: installed, every file as installed, registered, and loaded by Docker.
	Healthy     bool   `json:"healthy"`
	State       string `json:"state,omitempty"` // installing, installed, uninstalling
	Version     string `json:"version,omitempty"`
	RuntimeName string `json:"runtimeName,omitempty"`
	Default     bool   `json:"default,omitempty"`
	GuestKernel string `json:"guestKernel,omitempty"`
	// Artifacts are the installed files with their recorded checksums and what is on disk.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Registered: daemon.json holds the entry install wrote.
	Registered bool   `json:"registered"`
	DaemonJSON string `json:"daemonJSON,omitempty"`
	Docker     struct {
		Reachable bool   `json:"reachable"`
		Error     string `json:"error,omitempty"`
		// SeesRuntime: GET /info lists the runtime.
		SeesRuntime    bool   `json:"seesRuntime"`
		DefaultRuntime string `json:"defaultRuntime,omitempty"`
	} `json:"docker"`
	Containers []dockerapi.Container `json:"containers"`
	// Accelerator is what the runtime configuration says; HostAccelerator what works here.
	Accelerator       string   `json:"accelerator,omitempty"`
	HostAccelerator   string   `json:"hostAccelerator"`
	AcceleratorReason string   `json:"acceleratorReason"`
	Problems          []string `json:"problems,omitempty"`

	// Layout is "versioned", "flat" for an install by an earlier kata-deploy (the next install
	// or upgrade moves it into versions), or "upstream" for an upstream release.
	Layout string `json:"layout,omitempty"`
	// CurrentVersion is what <prefix>/current points at; PreviousVersion what `kata-deploy
	// rollback` returns to.
	CurrentVersion  *VersionStatus `json:"currentVersion,omitempty"`
	PreviousVersion *VersionStatus `json:"previousVersion,omitempty"`
	// OtherVersions are left by an interrupted or failed upgrade; the next install or upgrade
	// removes them.
	OtherVersions []VersionStatus `json:"otherVersions,omitempty"`
	// Notes are facts worth knowing that are not problems.
	Notes []string `json:"notes,omitempty"`
	// Upstream is the release installed with --from (Layout "upstream").
	Upstream *UpstreamStatus `json:"upstream,omitempty"`
	// Engine is "docker" or "containerd"; Containerd the state of a containerd registration.
	Engine     string            `json:"engine,omitempty"`
	Containerd *ContainerdStatus `json:"containerd,omitempty"`
	// Plugin is the Docker plugin service installed with --with-plugins.
	Plugin *PluginStatus `json:"plugin,omitempty"`
	// Factory is VM templating ([factory] of the configuration in use) and the templates the
	// runtime keeps; absent for an upstream release.
	Factory *FactoryStatus `json:"factory,omitempty"`
}

// ContainerdStatus is the registration of the runtime with containerd.
type ContainerdStatus struct {
	Config string `json:"config"`
	DropIn string `json:"dropIn"`
	// Imported: the main configuration imports the drop-in.
	Imported bool `json:"imported"`
	Running  bool `json:"running"`
	// SeesRuntime: the configuration containerd loads (`config dump`) holds the runtime.
	SeesRuntime bool `json:"seesRuntime"`
	// RestartPending: containerd has not restarted since the registration changed.
	RestartPending bool   `json:"restartPending"`
	Error          string `json:"error,omitempty"`
}

// VersionStatus is one version of the versioned layout.
type VersionStatus struct {
	ID                string    `json:"id"`
	Path              string    `json:"path"`
	Created           time.Time `json:"created"`
	KataDeployVersion string    `json:"kataDeployVersion,omitempty"`
	GuestKernel       string    `json:"guestKernel,omitempty"`
	// Ready: every file was written; Intact: every file is still as installed.
	Ready  bool `json:"ready"`
	Intact bool `json:"intact"`
}

// Artifact is one installed file.
type Artifact struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// State is "ok", "modified" or "missing".
	State string `json:"state"`
	// Version is the version the file belongs to ("" in the flat layout).
	Version string `json:"version,omitempty"`
}

// GetStatus reports on the install under o.Prefix without changing anything.
func GetStatus(ctx context.Context, o StatusOptions, d Deps) (*Status, error) {
	return getStatus(ctx, o.options(), d)
}

func getStatus(ctx context.Context, o options, d Deps) (*Status, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Status{SchemaVersion: StatusSchemaVersion, Prefix: o.Prefix, Containers: []dockerapi.Container{}}
	s.HostAccelerator, s.AcceleratorReason = accel.HostAccelerator()
	m, err := loadManifest(o.Prefix)
	if err != nil || m == nil {
		return s, err
	}
	s.Installed, s.State, s.Version, s.RuntimeName, s.Default = true, m.State, m.Version, m.RuntimeName, m.Default
	if m.State != manifest.StateInstalled {
		s.problem(fmt.Sprintf("the install is %s: a run was interrupted; run `kata-deploy install` (or uninstall) again to finish it", m.State))
	}
	var l layout.Layout
	shim, config := "", ""
	if m.Source == manifest.SourceUpstream {
		shim, config = s.checkUpstream(m)
	} else {
		l = s.checkVersions(m)
		shim, config = l.EntryShim(), l.EntryConfig()
	}
	s.checkFiles(m)
	s.Engine = optionsEngine(m)
	registeredWith(m).status(ctx, s, m, d, o, shim, config)
	s.checkPlugin(ctx, m, d)
	if m.Source != manifest.SourceUpstream {
		s.readConfig(l, d.Now()) // an upstream release's configuration is upstream's format, not ours
		if s.Factory != nil {
			s.Factory.PoolFillers = poolFillers("/proc", installDirs(m))
			s.notePool()
		}
	}
	s.Healthy = len(s.Problems) == 0
	return s, nil
}

// UpstreamStatus is an upstream Kata Containers release installed with --from.
type UpstreamStatus struct {
	Tarball string `json:"tarball"`
	SHA256  string `json:"sha256"`
	Version string `json:"version,omitempty"`
	Dir     string `json:"dir"`
	// Aside is a directory that was at Dir before, which uninstall puts back.
	Aside string `json:"aside,omitempty"`
}

// checkUpstream reports an upstream release and returns what it is registered with.
func (s *Status) checkUpstream(m *manifest.Manifest) (shim, config string) {
	s.Layout = "upstream"
	u := m.Upstream
	if u == nil {
		return "", ""
	}
	s.Upstream = &UpstreamStatus{Tarball: u.Tarball, SHA256: u.SHA256, Version: u.Version, Dir: u.Dir, Aside: u.Aside}
	if !u.Placed {
		s.problem(fmt.Sprintf("the release is not in %s yet (a run was interrupted): run `kata-deploy install --from %s` again", u.Dir, u.Tarball))
	}
	return u.Shim, u.Config
}

// checkVersions reports the versions and checks that current points at the current one; it
// returns the layout in use.
func (s *Status) checkVersions(m *manifest.Manifest) layout.Layout {
	if !m.Versioned() {
		s.Layout = "flat"
		if m.Image != nil {
			s.GuestKernel = m.Image.KernelVersion
		}
		s.Notes = append(s.Notes, "installed by an earlier kata-deploy, without versions: the next `kata-deploy upgrade` (or install) moves it into versions, after which rollback is possible")
		return layout.Layout{Prefix: m.Prefix}
	}
	s.Layout = manifest.LayoutVersioned
	for _, v := range m.Versions {
		vs := versionStatus(m, v)
		switch v.ID {
		case m.Current:
			s.CurrentVersion = &vs
			s.GuestKernel = vs.GuestKernel
		case m.Previous:
			s.PreviousVersion = &vs
			if !vs.Intact {
				s.Notes = append(s.Notes, fmt.Sprintf("the previous version %s is damaged (a file is missing or changed): rollback refuses it", v.ID))
			}
		default:
			s.OtherVersions = append(s.OtherVersions, vs)
		}
	}
	if len(s.OtherVersions) > 0 {
		s.Notes = append(s.Notes, "versions other than the current and the previous one are left by an interrupted or failed upgrade: the next install or upgrade removes them")
	}
	l := layout.Layout{Prefix: m.Prefix, Version: m.Current}
	if m.Current == "" {
		return l
	}
	target, err := readCurrent(m.Prefix)
	switch {
	case err != nil:
		s.problem(err.Error())
	case target != versionTarget(m.Current):
		s.problem(fmt.Sprintf("%s points at %q, not at the current version %s: run `kata-deploy install` again", l.CurrentLink(), target, versionTarget(m.Current)))
	}
	return l
}

func versionStatus(m *manifest.Manifest, v manifest.Version) VersionStatus {
	vs := VersionStatus{ID: v.ID, Path: layout.Layout{Prefix: m.Prefix, Version: v.ID}.Root(), Created: v.Created,
		KataDeployVersion: v.KataDeployVersion, Ready: v.Ready}
	if v.Image != nil {
		vs.GuestKernel = v.Image.KernelVersion
	}
	vs.Intact = v.Ready && versionFilesIntact(m, v.ID) == nil
	return vs
}

func (s *Status) problem(p string) { s.Problems = append(s.Problems, p) }

// checkFiles checks every recorded file; a damaged file of the version in use is a problem, one of
// another version only shows in that version's status.
func (s *Status) checkFiles(m *manifest.Manifest) {
	for _, f := range m.Files {
		a := Artifact{Path: f.Path, SHA256: f.SHA256, State: "ok", Version: fileVersion(m, f.Path)}
		inUse := a.Version == "" || a.Version == m.Current
		cur, _, err := fileSum(f.Path)
		switch {
		case err != nil || cur == "":
			a.State = "missing"
			if inUse {
				s.problem(f.Path + " is missing: run `kata-deploy install` to put it back")
			}
		case cur != f.SHA256:
			a.State = "modified"
			if inUse {
				s.problem(f.Path + " was changed since install")
			}
		}
		s.Artifacts = append(s.Artifacts, a)
	}
}

// fileVersion is the version a file belongs to ("" outside versions).
func fileVersion(m *manifest.Manifest, path string) string {
	for _, v := range m.Versions {
		if under(path, keptRoots(m.Prefix, v.ID)) {
			return v.ID
		}
	}
	return ""
}

// checkRegistration looks for the entry install wrote, unchanged, in daemon.json.
func (s *Status) checkRegistration(m *manifest.Manifest, shim, config string) {
	st := m.DaemonJSON
	if st == nil {
		s.problem("the runtime is not registered in any daemon.json (read-only configuration: add the stanza `kata-deploy install` printed)")
		return
	}
	s.DaemonJSON = st.Path
	want, err := json.Marshal(registration.Entry(shim, config))
	if err != nil {
		s.problem(err.Error())
		return
	}
	data, _, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		s.problem(err.Error())
		return
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		s.problem(fmt.Sprintf("%s: %v", st.Path, err))
		return
	}
	cur, ok := doc.Runtime(m.RuntimeName)
	s.Registered = ok && sameJSON(cur, want)
	switch {
	case !ok:
		s.problem(fmt.Sprintf("%s has no runtime %q: run `kata-deploy install` again", st.Path, m.RuntimeName))
	case !s.Registered:
		s.problem(fmt.Sprintf("runtime %q in %s is not the entry kata-deploy wrote", m.RuntimeName, st.Path))
	}
}

func sameJSON(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && fmt.Sprint(va) == fmt.Sprint(vb)
}

func (s *Status) checkDocker(ctx context.Context, m *manifest.Manifest, d Deps) {
	docker, _, err := d.Docker(ctx)
	if err != nil {
		s.Docker.Error = err.Error()
		s.problem("Docker is not reachable: " + err.Error())
		return
	}
	defer docker.Close()
	s.Docker.Reachable = true
	names, def, err := docker.Runtimes(ctx)
	if err != nil {
		s.Docker.Error = err.Error()
		s.problem("asking Docker for its runtimes: " + err.Error())
		return
	}
	s.Docker.SeesRuntime, s.Docker.DefaultRuntime = slices.Contains(names, m.RuntimeName), def
	if !s.Docker.SeesRuntime {
		s.problem(fmt.Sprintf("Docker does not list runtime %q: run `kata-deploy install` again (it reloads Docker)", m.RuntimeName))
	}
	if cs, err := docker.ContainersUsing(ctx, m.RuntimeName); err == nil {
		s.Containers = append(s.Containers, cs...)
	}
}

// readConfig reads the accelerator and templating from the runtime configuration and checks the
// file the way the shim will.
func (s *Status) readConfig(l layout.Layout, now time.Time) {
	data, err := os.ReadFile(l.Config())
	if err != nil {
		return // a missing file is reported with the artifacts
	}
	if c, err := config.Decode(data); err == nil {
		s.Accelerator = c.Hypervisor.Accelerator
		s.Factory = factoryStatus(c, now)
		s.noteFailedTemplates()
	}
	if _, err := config.Parse(data); err != nil {
		s.problem(fmt.Sprintf("%s does not pass the runtime's checks: %v", l.Config(), err))
	}
}

// checkContainerd checks the drop-in, its import, and what containerd loads.
func (s *Status) checkContainerd(ctx context.Context, m *manifest.Manifest, d Deps, o options) {
	st := m.Containerd
	if st == nil {
		s.problem("the runtime is not registered with containerd: run `kata-deploy install --engine containerd` again")
		return
	}
	cs := &ContainerdStatus{Config: st.Config, DropIn: st.DropIn}
	s.Containerd = cs
	s.Containers = append(s.Containers, runningFrom("/proc", installDirs(m))...)
	rec := m.File(st.DropIn)
	sum, _, err := fileSum(st.DropIn)
	intact := rec != nil && err == nil && sum == rec.SHA256
	if !intact {
		s.problem(fmt.Sprintf("the drop-in %s is missing or changed: run `kata-deploy install --engine containerd` again", st.DropIn))
	}
	if data, _, err := daemonjson.ReadFile(st.Config); err == nil {
		if doc, err := containerdcfg.Decode(st.Config, data); err == nil {
			imports, _ := containerdcfg.Imports(st.Config, doc)
			for _, imp := range imports {
				cs.Imported = cs.Imported || containerdcfg.Covers(st.Config, imp, st.DropIn)
			}
		}
	}
	if !cs.Imported {
		s.problem(fmt.Sprintf("%s does not import %s: run `kata-deploy install --engine containerd` again", st.Config, st.DropIn))
	}
	s.Registered = cs.Imported && intact
	daemon, err := d.Containerd(ctx, o.ContainerdAddress, st.Config)
	if err != nil {
		cs.Error = err.Error()
		s.problem("containerd: " + err.Error())
		return
	}
	cs.Running = daemon.Running()
	if dump, err := daemon.Dump(ctx); err != nil {
		cs.Error = err.Error()
	} else if doc, err := containerdcfg.Decode("containerd config dump", dump); err == nil {
		_, cs.SeesRuntime = containerdcfg.FindRuntime(doc, m.RuntimeName)
	}
	cs.RestartPending = restartPending(daemon, st)
	switch {
	case !cs.Running:
		s.problem("containerd is not running: start it (it loads the runtime when it starts)")
	case cs.RestartPending:
		s.problem("containerd has not been restarted since the runtime was registered: restart it (systemctl restart containerd) to load it")
	}
}

// restartPending reports whether the running containerd started before the registration last
// changed (by the files' times; by the record when its start time is unknown).
func restartPending(d Containerd, st *containerdcfg.State) bool {
	if !d.Running() {
		return false
	}
	started := d.StartedAt()
	if started.IsZero() {
		return st.RestartNeeded
	}
	// /proc gives the boot time in whole seconds: allow for that.
	return started.Add(time.Second).Before(latestChange(st.DropIn, st.Config))
}

// latestChange is the newest modification time of the files.
func latestChange(paths ...string) time.Time {
	var t time.Time
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// noteFailedTemplates notes template builds that failed: containers still run (cold), so it is
// not a problem, but they start slower than they should.
func (s *Status) noteFailedTemplates() {
	if s.Factory == nil || !s.Factory.Template {
		return
	}
	for _, t := range s.Factory.Templates {
		if t.Failed != "" {
			s.Notes = append(s.Notes, fmt.Sprintf("building the VM template %s failed (containers boot cold meanwhile): %s", t.Key, t.Failed))
		}
	}
}

// notePool notes a pool that is on but holds no waiting clone: containers then restore clones
// as without the pool, which is expected until the first container ran, or while the pool is
// refilled.
func (s *Status) notePool() {
	f := s.Factory
	if !f.Template || f.Pool <= 0 || f.PoolWaiting() > 0 || f.PoolDir == "" {
		return
	}
	if len(f.PoolFillers) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("the pool of clones is empty and being filled (pid %s); see %s",
			joinInts(f.PoolFillers), filepath.Join(f.PoolDir, runtimecache.PoolFillLog)))
		return
	}
	s.Notes = append(s.Notes, fmt.Sprintf("the pool of clones is empty: it fills after the first container; see %s",
		filepath.Join(f.PoolDir, runtimecache.PoolFillLog)))
}

func joinInts(ns []int) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, strconv.Itoa(n))
	}
	return strings.Join(parts, ", ")
}
