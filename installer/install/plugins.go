package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/configs"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
)

// PluginDirName is the directory under the prefix holding kata-plugins (and, outside systemd,
// its log). It is not versioned: the plugin serves volumes whatever runtime version is current,
// so upgrade and rollback leave it as it is.
const PluginDirName = "plugins"

// Plugin step names, after the install's own steps.
const (
	StepPluginBinary  = "plugin-binary"
	StepPluginUnit    = "plugin-unit"
	StepPluginStarted = "plugin-started"
	StepPluginRemoved = "plugin-removed"
)

// pluginServeTimeout bounds the wait for a started plugin's socket.
const pluginServeTimeout = 15 * time.Second

// PluginOptions say which plugin service install --with-plugins runs.
type PluginOptions struct {
	Name      string // the volume driver's name (pluginsvc.DefaultName when empty)
	StateDir  string // its volumes (pluginsvc.DefaultStateDir when empty)
	SocketDir string // where Docker finds it (pluginsvc.DefaultSocketDir when empty)
	// NetworkName and NetworkStateDir are the network driver's (pluginsvc.DefaultNetworkName and
	// DefaultNetworkStateDir when empty).
	NetworkName     string
	NetworkStateDir string
	UnitDir         string // where the systemd unit is written (pluginsvc.DefaultUnitDir when empty)
	// ServeTimeout bounds the wait for a started plugin's socket (15 s when zero).
	ServeTimeout time.Duration
	// FromContainer: kata-deploy runs in the installer image (--host-root), where a process it
	// starts would die with the container; only systemd can run the plugin then.
	FromContainer bool
}

// ErrPluginInUse is returned by Uninstall while Docker has volumes of the plugin (without
// Force).
var ErrPluginInUse = errors.New("volumes or networks of kata-deploy's plugins remain")

// PluginResult is the plugin service as install left it.
type PluginResult struct {
	Name   string `json:"name"`
	Mode   string `json:"mode"`
	Socket string `json:"socket"`
	Unit   string `json:"unit,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// Started: this run (re)started it.
	Started bool `json:"started"`
}

func (p PluginOptions) withDefaults() PluginOptions {
	if p.Name == "" {
		p.Name = pluginsvc.DefaultName
	}
	if p.StateDir == "" {
		p.StateDir = pluginsvc.DefaultStateDir
	}
	if p.SocketDir == "" {
		p.SocketDir = pluginsvc.DefaultSocketDir
	}
	if p.UnitDir == "" {
		p.UnitDir = pluginsvc.DefaultUnitDir
	}
	if p.NetworkName == "" {
		p.NetworkName = pluginsvc.DefaultNetworkName
	}
	if p.NetworkStateDir == "" {
		p.NetworkStateDir = pluginsvc.DefaultNetworkStateDir
	}
	if p.ServeTimeout == 0 {
		p.ServeTimeout = pluginServeTimeout
	}
	return p
}

// pluginRoot is the plugin's directory under the prefix: neither a version nor the flat layout,
// so never pruned.
func pluginRoot(prefix string) string { return filepath.Join(prefix, PluginDirName) }

// pluginSpec is the service the options describe, its binary under the prefix.
func (o options) pluginSpec() pluginsvc.Spec {
	return pluginsvc.Spec{Name: o.Plugin.Name, Binary: filepath.Join(pluginRoot(o.Prefix), pluginsvc.BinaryName),
		StateDir: o.Plugin.StateDir, SocketDir: o.Plugin.SocketDir,
		NetworkName: o.Plugin.NetworkName, NetworkStateDir: o.Plugin.NetworkStateDir}
}

func (o options) validatePlugin() error {
	if !o.WithPlugins {
		return nil
	}
	if o.Engine != EngineDocker {
		return fmt.Errorf("--with-plugins serves Docker's volume plugins: it needs --engine docker")
	}
	if o.From != "" {
		return fmt.Errorf("--with-plugins goes with kata-deploy's own runtime, not an upstream release (--from)")
	}
	if err := o.pluginSpec().Validate(); err != nil {
		return fmt.Errorf("--with-plugins: %w", err)
	}
	return nil
}

// pluginPlan is what installing the plugin service does.
type pluginPlan struct {
	spec    pluginsvc.Spec
	mode    string
	dir     string // <prefix>/plugins
	newDir  bool
	binary  fileAction
	unit    fileAction // systemd only
	log     string     // process only
	running bool       // the recorded service runs and serves its socket
}

// changes reports whether the service must be (re)started.
func (pp *pluginPlan) changes() bool {
	return pp.newDir || writes(pp.binary) || pp.binary.State == fileForeign || writes(pp.unit) || pp.unit.State == fileForeign || !pp.running
}

// planPlugin decides what install --with-plugins does, refusing what it must not do before
// anything changes.
func (x *installer) planPlugin(ctx context.Context, m *manifest.Manifest) (*pluginPlan, error) {
	spec := x.o.pluginSpec()
	pp := &pluginPlan{spec: spec, mode: manifest.PluginProcess, dir: filepath.Dir(spec.Binary)}
	if x.systemdRuns() {
		pp.mode = manifest.PluginSystemd
	} else if x.o.Plugin.FromContainer {
		return nil, fmt.Errorf("--with-plugins: systemd does not run on this host, and a plugin process started from the installer image would end with its container: run `kata-deploy install --with-plugins` on the host itself, or use the managed plugin (make plugin-bundle; docs/plugins.md)")
	}
	var rec *manifest.Plugin
	if m != nil {
		rec = m.Plugin
	}
	if rec != nil && (rec.Name != spec.Name || rec.StateDir != spec.StateDir || rec.SocketDir != spec.SocketDir || rec.Mode != pp.mode ||
		rec.NetworkName != spec.NetworkName || rec.NetworkStateDir != spec.NetworkStateDir) {
		return nil, fmt.Errorf("the install under %s runs plugin %q (%s, state in %s): uninstall it first to change the plugin's name, state directory or how it runs",
			x.o.Prefix, rec.Name, rec.Mode, rec.StateDir)
	}
	if rec == nil {
		// kata-plugins replaces whatever is at its sockets' paths: never someone else's.
		for _, sock := range spec.Sockets() {
			if pluginsvc.Reachable(sock) {
				return nil, fmt.Errorf("%s is already served by a plugin kata-deploy did not start: stop it first, or choose other names with --plugin-name and --plugin-network-name", sock)
			}
		}
	}
	if _, err := os.Stat(pp.dir); errors.Is(err, fs.ErrNotExist) {
		pp.newDir = true
	}
	dir, err := x.artifactsDir()
	if err != nil {
		return nil, err
	}
	src, err := artifact(dir, pluginsvc.BinaryName)
	if err != nil {
		return nil, err
	}
	bin := fileAction{Path: spec.Binary, Mode: 0o755, Src: src.Path, SHA256: src.SHA256, Size: src.Size}
	if pp.binary, err = planFile(m, bin, x.o.Replace); err != nil {
		return nil, err
	}
	if err := x.planPluginRunner(ctx, pp, m, rec); err != nil {
		return nil, err
	}
	return pp, nil
}

// planPluginRunner plans the unit (systemd) or the log (a process), and whether the recorded
// service runs.
func (x *installer) planPluginRunner(ctx context.Context, pp *pluginPlan, m *manifest.Manifest, rec *manifest.Plugin) error {
	if pp.mode == manifest.PluginProcess {
		pp.log = filepath.Join(pp.dir, pp.spec.Name+".log")
		pp.running = rec != nil && pluginProcess(rec).Alive("/proc") && pluginsvc.Reachable(pp.spec.Socket())
		return nil
	}
	data, err := pluginsvc.RenderUnit(configs.PluginsUnit, pp.spec)
	if err != nil {
		return err
	}
	path := filepath.Join(x.o.Plugin.UnitDir, pluginsvc.UnitName(pp.spec.Name))
	unit := fileAction{Path: path, Mode: 0o644, Data: data, SHA256: bytesSum(data), Size: int64(len(data))}
	// A unit of the same name there before (copied by hand) is refused, or kept aside with
	// --replace-foreign and put back by uninstall, like any file install replaces.
	if pp.unit, err = planFile(m, unit, x.o.Replace); err != nil {
		return err
	}
	if rec != nil {
		pid, err := x.systemctl().MainPID(ctx, pluginsvc.UnitName(pp.spec.Name))
		pp.running = err == nil && pid > 0 && pluginsvc.Reachable(pp.spec.Socket())
	}
	return nil
}

func pluginProcess(rec *manifest.Plugin) pluginsvc.Process {
	return pluginsvc.Process{PID: rec.PID, StartTime: rec.StartTime}
}

func (x *installer) systemdRuns() bool {
	if x.d.SystemdRuns != nil {
		return x.d.SystemdRuns()
	}
	return pluginsvc.SystemdRuns()
}

func (x *installer) systemctl() pluginsvc.Systemctl {
	if x.d.Systemctl != nil {
		return x.d.Systemctl
	}
	return pluginsvc.RunSystemctl
}

// actions render the plan.
func (pp *pluginPlan) actions() []Action {
	var as []Action
	if pp.newDir {
		as = append(as, Action{Op: "mkdir", Target: pp.dir})
	}
	as = append(as, fileActions(pp.binary, "the Docker plugins, from "+pp.binary.Src)...)
	if pp.mode == manifest.PluginSystemd {
		as = append(as, fileActions(pp.unit, "the plugins' systemd unit, ordered before docker.service")...)
	}
	if pp.changes() {
		how := "systemctl enable, then start (or restart) " + filepath.Base(pp.unit.Path)
		if pp.mode == manifest.PluginProcess {
			how = "a process of its own session (systemd does not run here), output in " + pp.log
		}
		as = append(as, Action{Op: "start-plugin", Target: pp.spec.Socket(), Detail: fmt.Sprintf("volume driver %s: %s", pp.spec.Name, how)})
	}
	return as
}

// applyPlugin installs and starts the plugin service. A first install that fails removes what
// it made for the plugin again (the runtime stays installed).
func (x *installer) applyPlugin(ctx context.Context, pp *pluginPlan) error {
	fresh := x.m.Plugin == nil
	err := x.startPlugin(ctx, pp)
	if err == nil || !fresh {
		return err
	}
	if x.m.Plugin != nil && x.m.Plugin.Log != "" { // a unit's output is in the journal
		err = fmt.Errorf("%w (log: %s)", err, logTail(x.m.Plugin.Log))
	}
	if _, rmErr := x.removePlugin(ctx, false); rmErr != nil {
		return fmt.Errorf("%w; removing what was installed for the plugin failed too: %v", err, rmErr)
	}
	return fmt.Errorf("%w; the plugin was removed again, the runtime stays installed", err)
}

func (x *installer) startPlugin(ctx context.Context, pp *pluginPlan) error {
	x.res.Plugin = &PluginResult{Name: pp.spec.Name, Mode: pp.mode, Socket: pp.spec.Socket(), Unit: pp.unit.Path}
	if x.m.Plugin == nil {
		x.m.Plugin = &manifest.Plugin{Name: pp.spec.Name, Binary: pp.spec.Binary, StateDir: pp.spec.StateDir,
			SocketDir: pp.spec.SocketDir, NetworkName: pp.spec.NetworkName, NetworkStateDir: pp.spec.NetworkStateDir,
			Mode: pp.mode, Log: pp.log}
		x.res.Changed = true
	}
	if !pp.changes() {
		x.res.Plugin.PID = x.m.Plugin.PID
		return nil
	}
	x.res.Changed = true
	if err := x.makePluginDirs(pp); err != nil {
		return err
	}
	if err := x.putFile(pp.binary, StepPluginBinary); err != nil {
		return err
	}
	x.o.progress(fmt.Sprintf("starting the %s volume plugin on %s", pp.spec.Name, pp.spec.Socket()))
	var err error
	if pp.mode == manifest.PluginSystemd {
		err = x.startPluginUnit(ctx, pp)
	} else {
		err = x.startPluginProcess(ctx, pp)
	}
	if err != nil {
		return err
	}
	x.res.Plugin.Started = true
	return x.done(StepPluginStarted)
}

// makePluginDirs creates <prefix>/plugins and the state directories with those of their parents
// that are missing, each journaled before it exists.
func (x *installer) makePluginDirs(pp *pluginPlan) error {
	todo := absentDirs(pp.spec.StateDir)
	if pp.spec.NetworkName != "" {
		for _, d := range absentDirs(pp.spec.NetworkStateDir) {
			if !slices.Contains(todo, d) {
				todo = append(todo, d)
			}
		}
	}
	if pp.newDir {
		x.m.AddDir(pp.dir)
	}
	for _, d := range todo {
		if !slices.Contains(x.m.Plugin.CreatedDirs, d) {
			x.m.Plugin.CreatedDirs = append(x.m.Plugin.CreatedDirs, d)
		}
	}
	if err := x.save(); err != nil {
		return err
	}
	if err := os.Mkdir(pp.dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", pp.dir, err)
	}
	for _, d := range todo {
		mode := fs.FileMode(0o755)
		if d == pp.spec.StateDir || d == pp.spec.NetworkStateDir {
			mode = 0o700 // volume images, network state: root's only, as kata-plugins makes them
		}
		if err := os.Mkdir(d, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return nil
}

// absentDirs are dir and its parents that do not exist, parents first.
func absentDirs(dir string) []string {
	var out []string
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		out = append(out, d)
	}
	slices.Reverse(out)
	return out
}

func (x *installer) startPluginUnit(ctx context.Context, pp *pluginPlan) error {
	// A running unit whose file or binary changed is restarted; otherwise start is enough (and
	// does nothing to a unit that runs).
	restart := pp.unit.State == fileUpdate || pp.binary.State == fileUpdate || pp.binary.State == fileForeign
	x.m.Plugin.Unit, x.m.Plugin.UnitSHA256 = pp.unit.Path, pp.unit.SHA256
	if err := x.putFile(pp.unit, StepPluginUnit); err != nil {
		return err
	}
	if err := x.systemctl().Enable(ctx, pluginsvc.UnitName(pp.spec.Name), restart); err != nil {
		return fmt.Errorf("starting the plugin's unit: %w (journalctl -u %s says why)", err, pluginsvc.UnitName(pp.spec.Name))
	}
	if err := pluginsvc.WaitServing(ctx, pp.spec.Socket(), x.o.Plugin.ServeTimeout, nil); err != nil {
		return fmt.Errorf("%w (journalctl -u %s says why)", err, pluginsvc.UnitName(pp.spec.Name))
	}
	return nil
}

func (x *installer) startPluginProcess(ctx context.Context, pp *pluginPlan) error {
	if err := pluginProcess(x.m.Plugin).Stop(ctx, "/proc", 10*time.Second); err != nil {
		return err
	}
	x.m.Plugin.PID, x.m.Plugin.StartTime, x.m.Plugin.Log = 0, 0, pp.log
	if err := x.save(); err != nil { // the log is recorded before it exists
		return err
	}
	p, err := pluginsvc.StartProcess(pp.spec, pp.log)
	if err != nil {
		return err
	}
	x.m.Plugin.PID, x.m.Plugin.StartTime = p.PID, p.StartTime
	x.res.Plugin.PID = p.PID
	if err := x.save(); err != nil {
		return err
	}
	return pluginsvc.WaitServing(ctx, pp.spec.Socket(), x.o.Plugin.ServeTimeout, p.Check("/proc"))
}

// logTail is the end of the plugin's log, for an error message.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return "empty"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "; ")
}

// pluginObjects asks Docker which volumes and networks of the recorded plugin's drivers remain.
func (x *installer) pluginObjects(ctx context.Context) (vols, nets []string, err error) {
	if x.m.Plugin == nil || x.docker == nil {
		return nil, nil, nil
	}
	if vols, err = x.docker.VolumesOfDriver(ctx, x.m.Plugin.Name); err != nil {
		return nil, nil, err
	}
	if x.m.Plugin.NetworkName != "" {
		if nets, err = x.docker.NetworksOfDriver(ctx, x.m.Plugin.NetworkName); err != nil {
			return nil, nil, err
		}
	}
	return vols, nets, nil
}

// checkPluginVolumes refuses to remove the plugin while Docker has volumes or networks of its
// drivers, unless forced, which lists them as left behind.
func (x *installer) checkPluginVolumes(ctx context.Context, res *UninstallResult) error {
	if x.m.Plugin == nil {
		return nil
	}
	if x.docker == nil {
		x.warn(fmt.Sprintf("Docker is not reachable: volumes and networks of plugin %s cannot be counted; their state stays in %s", x.m.Plugin.Name, x.pluginStateDirs()))
		res.PluginStateKept = x.m.Plugin.StateDir
		return nil
	}
	vols, nets, err := x.pluginObjects(ctx)
	if err != nil {
		return err
	}
	res.PluginVolumes, res.PluginNetworks = vols, nets
	if len(vols)+len(nets) == 0 {
		return nil
	}
	left := pluginObjectList(vols, nets)
	if !x.o.RemovePluginWithVolumes {
		return fmt.Errorf("%w: Docker has %s; nothing was changed. Remove them first (%s), "+
			"or pass --force to remove the plugin anyway (their state stays in %s, unusable until the plugin runs again)",
			ErrPluginInUse, left, pluginRemoveCommands(vols, nets), x.pluginStateDirs())
	}
	res.PluginStateKept = x.m.Plugin.StateDir
	x.warn(fmt.Sprintf("--force: the plugin %s is removed although Docker still has %s; their state stays in %s (removing them fails until the plugin runs again: reinstall with --with-plugins, then remove them)",
		x.m.Plugin.Name, left, x.pluginStateDirs()))
	return nil
}

// pluginObjectList names what Docker has of the plugin's drivers, for a message.
func pluginObjectList(vols, nets []string) string {
	var parts []string
	if len(vols) > 0 {
		parts = append(parts, fmt.Sprintf("%d volume(s) %s", len(vols), strings.Join(vols, ", ")))
	}
	if len(nets) > 0 {
		parts = append(parts, fmt.Sprintf("%d network(s) %s", len(nets), strings.Join(nets, ", ")))
	}
	return strings.Join(parts, " and ")
}

func pluginRemoveCommands(vols, nets []string) string {
	var cmds []string
	if len(vols) > 0 {
		cmds = append(cmds, "docker volume rm "+strings.Join(vols, " "))
	}
	if len(nets) > 0 {
		cmds = append(cmds, "docker network rm "+strings.Join(nets, " "))
	}
	return strings.Join(cmds, "; ")
}

func (x *installer) pluginStateDirs() string {
	if x.m.Plugin.NetworkStateDir == "" {
		return x.m.Plugin.StateDir
	}
	return x.m.Plugin.StateDir + " and " + x.m.Plugin.NetworkStateDir
}

// removePlugin stops the plugin service and removes what install made for it: the unit, the
// binary, its directory, the log, the socket it left, and the state directories install created
// (unless keepState: volumes remain in them). It returns what it removed.
func (x *installer) removePlugin(ctx context.Context, keepState bool) ([]string, error) {
	rec := x.m.Plugin
	if rec == nil {
		return nil, nil
	}
	var removed []string
	if rec.Mode == manifest.PluginSystemd {
		if err := x.stopPluginUnit(ctx, rec, &removed); err != nil {
			return removed, err
		}
	} else if err := pluginProcess(rec).Stop(ctx, "/proc", 10*time.Second); err != nil {
		return removed, err
	}
	spec := pluginsvc.Spec{Name: rec.Name, SocketDir: rec.SocketDir, NetworkName: rec.NetworkName}
	for _, sock := range spec.Sockets() {
		if removeStaleSocket(sock) {
			removed = append(removed, sock)
		}
	}
	removed = append(removed, x.removeRecordedFile(rec.Binary)...)
	if rec.Log != "" && os.Remove(rec.Log) == nil {
		removed = append(removed, rec.Log)
	}
	if dir := filepath.Dir(rec.Binary); slices.Contains(x.m.Dirs, dir) {
		if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
			x.m.Dirs = slices.DeleteFunc(x.m.Dirs, func(d string) bool { return d == dir })
			removed = append(removed, dir+"/")
		} else {
			x.warn(fmt.Sprintf("%s is not empty: left in place", dir))
		}
	}
	if !keepState {
		removed = append(removed, x.removePluginState(rec)...)
	}
	x.m.Plugin = nil
	return removed, x.done(StepPluginRemoved)
}

func (x *installer) stopPluginUnit(ctx context.Context, rec *manifest.Plugin, removed *[]string) error {
	unit := pluginsvc.UnitName(rec.Name)
	if err := x.systemctl().Disable(ctx, unit); err != nil {
		return fmt.Errorf("stopping the plugin's unit: %w", err)
	}
	*removed = append(*removed, x.removeRecordedFile(rec.Unit)...)
	if err := x.systemctl().Reload(ctx); err != nil {
		x.warn(fmt.Sprintf("systemctl daemon-reload after removing %s: %v", rec.Unit, err))
	}
	return nil
}

// removeRecordedFile removes one of the manifest's files (if still kata-deploy's) and forgets it.
func (x *installer) removeRecordedFile(path string) []string {
	f := x.m.File(path)
	if f == nil {
		return nil
	}
	res := &UninstallResult{}
	outcome := x.removeFile(*f, res)
	x.restorePrevious(*f, res)
	if outcome == "kept" {
		return nil
	}
	x.m.Files = slices.DeleteFunc(x.m.Files, func(g manifest.File) bool { return g.Path == path })
	if outcome == "removed" {
		return []string{path}
	}
	return nil
}

// removeStaleSocket removes the socket a killed plugin left; a served one is someone else's.
func removeStaleSocket(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || pluginsvc.Reachable(path) {
		return false
	}
	return os.Remove(path) == nil
}

// removePluginState removes the plugin's empty state (volumes.json without volumes,
// networks.json without networks) and the directories install created for it, deepest first;
// anything else in them stays.
func (x *installer) removePluginState(rec *manifest.Plugin) []string {
	var removed []string
	for dir, file := range map[string]string{rec.StateDir: "volumes.json", rec.NetworkStateDir: "networks.json"} {
		if dir == "" || !slices.Contains(rec.CreatedDirs, dir) {
			continue
		}
		if entries, err := os.ReadDir(dir); err == nil && len(entries) == 1 && entries[0].Name() == file {
			state := filepath.Join(dir, file)
			if os.Remove(state) == nil {
				removed = append(removed, state)
			}
		}
	}
	for i := len(rec.CreatedDirs) - 1; i >= 0; i-- {
		d := rec.CreatedDirs[i]
		err := os.Remove(d)
		switch {
		case err == nil:
			removed = append(removed, d+"/")
		case errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
			x.warn(fmt.Sprintf("%s is not empty (volumes or files kata-deploy did not make): left in place", d))
		default:
			x.warn(fmt.Sprintf("could not remove %s: %v", d, err))
		}
	}
	return removed
}

// PluginStatus is the plugin service of an install, as `kata-deploy status` reports it.
type PluginStatus struct {
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	Binary   string `json:"binary"`
	StateDir string `json:"stateDir"`
	Socket   string `json:"socket"`
	Unit     string `json:"unit,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Running  bool   `json:"running"`
	// SocketReachable: the socket accepts connections (what Docker needs).
	SocketReachable bool `json:"socketReachable"`
	// Volumes is how many volumes of the driver Docker has (absent when Docker is unreachable).
	Volumes *int `json:"volumes,omitempty"`
	// NetworkName is the network driver served ("" for none); Networks how many networks of it
	// Docker has, and NetworkSocketReachable whether its socket accepts connections.
	NetworkName            string `json:"networkName,omitempty"`
	Networks               *int   `json:"networks,omitempty"`
	NetworkSocketReachable bool   `json:"networkSocketReachable,omitempty"`
}

// checkPlugin reports the plugin service; one that does not serve its socket is a problem.
func (s *Status) checkPlugin(ctx context.Context, m *manifest.Manifest, d Deps) {
	rec := m.Plugin
	if rec == nil {
		return
	}
	spec := pluginsvc.Spec{Name: rec.Name, SocketDir: rec.SocketDir}
	ps := &PluginStatus{Name: rec.Name, Mode: rec.Mode, Binary: rec.Binary, StateDir: rec.StateDir, Socket: spec.Socket(), Unit: rec.Unit}
	x := &installer{d: d}
	if rec.Mode == manifest.PluginSystemd {
		if pid, err := x.systemctl().MainPID(ctx, pluginsvc.UnitName(rec.Name)); err == nil && pid > 0 {
			ps.PID, ps.Running = pid, true
		}
	} else if pluginProcess(rec).Alive("/proc") {
		ps.PID, ps.Running = rec.PID, true
	}
	ps.SocketReachable = pluginsvc.Reachable(ps.Socket)
	ps.NetworkName = rec.NetworkName
	if rec.NetworkName != "" {
		ps.NetworkSocketReachable = pluginsvc.Reachable(pluginsvc.Spec{Name: rec.NetworkName, SocketDir: rec.SocketDir}.Socket())
	}
	if docker, _, err := d.Docker(ctx); err == nil {
		if vols, err := docker.VolumesOfDriver(ctx, rec.Name); err == nil {
			n := len(vols)
			ps.Volumes = &n
		}
		if rec.NetworkName != "" {
			if nets, err := docker.NetworksOfDriver(ctx, rec.NetworkName); err == nil {
				n := len(nets)
				ps.Networks = &n
			}
		}
		_ = docker.Close()
	}
	s.Plugin = ps
	switch {
	case !ps.Running && rec.Mode == manifest.PluginSystemd:
		s.problem(fmt.Sprintf("the %s volume plugin is not running: `systemctl start %s` (journalctl -u %s says why it stopped)", rec.Name, pluginsvc.UnitName(rec.Name), pluginsvc.UnitName(rec.Name)))
	case !ps.Running:
		s.problem(fmt.Sprintf("the %s volume plugin is not running (nothing restarts it without systemd; its log: %s): `kata-deploy install --with-plugins` starts it again", rec.Name, rec.Log))
	case !ps.SocketReachable:
		s.problem(fmt.Sprintf("the %s volume plugin runs but does not serve %s: Docker cannot reach it", rec.Name, ps.Socket))
	case rec.NetworkName != "" && !ps.NetworkSocketReachable:
		s.problem(fmt.Sprintf("the plugins run but the %s network driver does not serve its socket in %s: Docker cannot reach it", rec.NetworkName, rec.SocketDir))
	}
}
