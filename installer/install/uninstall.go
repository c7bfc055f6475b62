package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/containerdsvc"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/installer/textdiff"
)

// UninstallResult is what Uninstall did (or would do).
type UninstallResult struct {
	SchemaVersion int    `json:"schemaVersion"`
	DryRun        bool   `json:"dryRun"`
	Prefix        string `json:"prefix"`
	// Installed is false when there was nothing to uninstall.
	Installed   bool   `json:"installed"`
	RuntimeName string `json:"runtimeName,omitempty"`
	DaemonJSON  string `json:"daemonJSON,omitempty"`
	// DaemonJSONDiff is the planned revert as a unified diff (dry run).
	DaemonJSONDiff string `json:"daemonJSONDiff,omitempty"`
	// Removed are the files and directories removed (or to be removed).
	Removed []string `json:"removed,omitempty"`
	// Restored are files that were there before install, put back.
	Restored []string `json:"restored,omitempty"`
	// Kept are files left because they were changed since install.
	Kept []string `json:"kept,omitempty"`
	// Containers are the running containers of the runtime (uninstall refuses without --force);
	// with containerd, the shim processes running from the install.
	Containers []dockerapi.Container `json:"containers,omitempty"`
	Warnings   []string              `json:"warnings,omitempty"`
	// ContainerdConfig is the main configuration the import is removed from; ContainerdDiff the
	// planned revert (dry run); ContainerdRestart what the restart of containerd did.
	ContainerdConfig  string                 `json:"containerdConfig,omitempty"`
	ContainerdDiff    string                 `json:"containerdDiff,omitempty"`
	ContainerdRestart *containerdsvc.Restart `json:"containerdRestart,omitempty"`
	// Plugin is the plugin service removed (install --with-plugins); PluginVolumes the volumes
	// Docker still had of it (uninstall refuses them without --force); PluginStateKept the
	// state directory left with their images.
	Plugin          string   `json:"plugin,omitempty"`
	PluginVolumes   []string `json:"pluginVolumes,omitempty"`
	PluginNetworks  []string `json:"pluginNetworks,omitempty"`
	PluginStateKept string   `json:"pluginStateKept,omitempty"`
}

// Uninstall removes what the manifest under o.Prefix records and reverts its daemon.json changes.
func Uninstall(ctx context.Context, o UninstallOptions, d Deps) (*UninstallResult, error) {
	return uninstall(ctx, o.options(), d)
}

func uninstall(ctx context.Context, o options, d Deps) (*UninstallResult, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &UninstallResult{SchemaVersion: ResultSchemaVersion, DryRun: o.DryRun, Prefix: o.Prefix}
	x := &installer{o: o, d: d, res: &Result{}, warns: &res.Warnings}
	m, release, err := begin(o)
	defer release()
	if err != nil || m == nil {
		if err == nil && !o.DryRun && isEmptyDir(o.Prefix) {
			// A previous uninstall was killed between removing the manifest and the prefix.
			_ = os.Remove(o.Prefix)
		}
		return res, err
	}
	res.Installed, res.RuntimeName, x.m = true, m.RuntimeName, m
	if m.DaemonJSON != nil {
		res.DaemonJSON = m.DaemonJSON.Path
	}
	if err := reconcileContainerd(m); err != nil {
		return res, err
	}
	reconcileUpstream(m)
	forgetUnplaced(m)
	done, err := registeredWith(m).inUse(ctx, x, res)
	defer done()
	if err != nil {
		return res, err
	}
	if m.Plugin != nil {
		res.Plugin = m.Plugin.Name
	}
	if err := x.checkPluginVolumes(ctx, res); err != nil {
		return res, err
	}
	if o.DryRun {
		return res, x.planUninstall(res)
	}
	m.State = manifest.StateUninstalling
	if err := x.done(StepUninstalling); err != nil {
		return res, err
	}
	removed, err := x.removePlugin(ctx, res.PluginStateKept != "")
	res.Removed = append(res.Removed, removed...)
	if err != nil {
		return res, err
	}
	if err := x.unregister(ctx); err != nil {
		return res, err
	}
	res.ContainerdRestart = x.res.Containerd
	// Before the files: the configurations say where the runtime keeps its caches.
	x.removeRuntimeDirs(ctx, res)
	x.removeFiles(res)
	x.removeLinks(res)
	x.m.Versions, x.m.Current, x.m.Previous, x.m.Switch = nil, "", "", nil
	if err := x.done(StepFiles); err != nil {
		return res, err
	}
	return res, x.removeDirs(res)
}

func describeContainers(cs []dockerapi.Container) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s (%s, image %s)", c.Name, c.ID, c.Image))
	}
	return fmt.Sprintf("%d running: %s", len(cs), strings.Join(parts, ", "))
}

// checkShims refuses to uninstall a containerd registration while shims of the install run
// (there is no Docker to ask which containers use the runtime).
func (x *installer) checkShims(res *UninstallResult) error {
	if x.m.Containerd != nil {
		res.ContainerdConfig = x.m.Containerd.Config
	}
	res.Containers = runningFrom("/proc", installDirs(x.m))
	if len(res.Containers) > 0 && !x.o.IgnoreInUse {
		return fmt.Errorf("%w: %s; stop those pods first, or pass --ignore-in-use or --force (they keep running, but without their runtime's files)", ErrInUse, describeContainers(res.Containers))
	}
	return nil
}

func (x *installer) unregister(ctx context.Context) error {
	return registeredWith(x.m).revert(ctx, x)
}

// unregisterDaemonJSON reverts kata-deploy's changes of daemon.json and reloads Docker.
func (x *installer) unregisterDaemonJSON(ctx context.Context) error {
	st := x.m.DaemonJSON
	if st == nil {
		return nil
	}
	reg := &registration.Registrar{
		Save:       func(*registration.State) error { return x.save() },
		Checkpoint: x.after,
		Warn:       x.warn,
		Now:        x.d.Now,
	}
	if x.docker != nil {
		reg.Daemon = x.docker
	}
	res, err := reg.Unregister(ctx, st, x.m.RuntimeName)
	if err != nil {
		return err
	}
	for _, k := range res.Kept {
		if k.Change.Key == "/runtimes/"+x.m.RuntimeName {
			x.warn(fmt.Sprintf("runtime %q stays in %s because it was edited after install, but its files are being removed: delete the entry by hand", x.m.RuntimeName, st.Path))
		}
	}
	return x.done(StepUnregistered)
}

// removeFiles removes the recorded files that are still kata-deploy's, newest first, restores
// the files they replaced, and keeps (and reports) the ones changed since.
func (x *installer) removeFiles(res *UninstallResult) {
	var kept []manifest.File
	for i := len(x.m.Files) - 1; i >= 0; i-- {
		f := x.m.Files[i]
		switch x.removeFile(f, res) {
		case "kept":
			kept = append(kept, f)
			res.Kept = append(res.Kept, f.Path)
		case "removed":
			res.Removed = append(res.Removed, f.Path)
		}
		x.restorePrevious(f, res)
	}
	slices.Reverse(kept)
	x.m.Files = kept
	for _, s := range x.m.Scratch {
		if err := os.RemoveAll(s); err != nil {
			x.warn(fmt.Sprintf("could not remove %s: %v", s, err))
		}
	}
	x.m.Scratch = nil
}

// removeLinks removes the recorded symlinks that still point where kata-deploy pointed them.
func (x *installer) removeLinks(res *UninstallResult) {
	var kept []manifest.Link
	for i := len(x.m.Links) - 1; i >= 0; i-- {
		l := x.m.Links[i]
		switch x.removeLink(l) {
		case "kept":
			kept = append(kept, l)
			res.Kept = append(res.Kept, l.Path)
		case "removed":
			res.Removed = append(res.Removed, l.Path)
		}
	}
	slices.Reverse(kept)
	x.m.Links = kept
}

// removeLink returns "removed", "kept" or "" (nothing there).
func (x *installer) removeLink(l manifest.Link) string {
	target, err := os.Readlink(l.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ""
	case err != nil:
		x.warn(fmt.Sprintf("%s is no longer the symlink kata-deploy made (%v); left as is", l.Path, err))
		return "kept"
	case !l.Owns(target):
		x.warn(fmt.Sprintf("%s now points at %s, not where kata-deploy pointed it; left as is", l.Path, target))
		return "kept"
	}
	if err := os.Remove(l.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		x.warn(fmt.Sprintf("could not remove %s: %v", l.Path, err))
		return "kept"
	}
	return "removed"
}

// removeFile returns "removed", "kept" or "" (nothing there).
func (x *installer) removeFile(f manifest.File, res *UninstallResult) string {
	cur, _, err := fileSum(f.Path)
	switch {
	case err != nil:
		x.warn(fmt.Sprintf("%s: %v; left as is", f.Path, err))
		return "kept"
	case cur == "":
		return ""
	case f.Owns(cur):
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			x.warn(fmt.Sprintf("could not remove %s: %v", f.Path, err))
			return "kept"
		}
		return "removed"
	case f.Previous != nil && cur == f.Previous.SHA256:
		return "" // the file install meant to replace was never moved aside
	}
	x.warn(fmt.Sprintf("%s was changed since install (sha256 %.12s, installed %.12s); left as is", f.Path, cur, f.SHA256))
	return "kept"
}

func (x *installer) restorePrevious(f manifest.File, res *UninstallResult) {
	if f.Previous == nil {
		return
	}
	if _, err := os.Lstat(f.Previous.SavedAs); err != nil {
		return
	}
	if _, err := os.Lstat(f.Path); err == nil {
		x.warn(fmt.Sprintf("%s is where the file that was there before install waits to come back, but %s is in the way: left both", f.Previous.SavedAs, f.Path))
		return
	}
	if err := renameSynced(f.Previous.SavedAs, f.Path); err != nil {
		x.warn(fmt.Sprintf("could not restore %s from %s: %v", f.Path, f.Previous.SavedAs, err))
		return
	}
	res.Restored = append(res.Restored, f.Path)
}

// removeDirs removes the recorded directories that are empty now, deepest first, then the
// manifest, then the prefix itself if install created it.
func (x *installer) removeDirs(res *UninstallResult) error {
	prefix := x.m.Prefix
	var ownPrefix bool
	for i := len(x.m.Dirs) - 1; i >= 0; i-- {
		d := x.m.Dirs[i]
		if d == prefix {
			ownPrefix = true
			continue
		}
		x.removeEmptyDir(d, prefixDirLeft, res)
	}
	x.m.Dirs = slices.DeleteFunc(x.m.Dirs, func(d string) bool { return d != prefix })
	x.restoreAside(res)
	if err := x.done(StepDirsRemoved); err != nil {
		return err
	}
	if err := x.m.Remove(); err != nil {
		return err
	}
	x.after(StepManifestGone)
	if ownPrefix {
		x.removeEmptyDir(prefix, prefixDirLeft, res)
	}
	return nil
}

// prefixDirLeft says why a directory of the prefix stays.
const prefixDirLeft = "files kata-deploy did not install, or changed ones"

// removeEmptyDir removes d when it is empty; otherwise it warns, with why it is left.
func (x *installer) removeEmptyDir(d, whyLeft string, res *UninstallResult) {
	err := os.Remove(d)
	switch {
	case err == nil:
		res.Removed = append(res.Removed, d+"/")
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
		x.warn(fmt.Sprintf("%s is not empty (%s): left in place", d, whyLeft))
	default:
		x.warn(fmt.Sprintf("could not remove %s: %v", d, err))
	}
}

// planUninstall fills res with what an uninstall would do, changing nothing.
func (x *installer) planUninstall(res *UninstallResult) error {
	x.plannedRuntimeDirs(res)
	for i := len(x.m.Files) - 1; i >= 0; i-- {
		f := x.m.Files[i]
		cur, _, err := fileSum(f.Path)
		switch {
		case err != nil || (cur != "" && !f.Owns(cur) && (f.Previous == nil || cur != f.Previous.SHA256)):
			res.Kept = append(res.Kept, f.Path)
		case cur != "" && f.Owns(cur):
			res.Removed = append(res.Removed, f.Path)
		}
	}
	for i := len(x.m.Links) - 1; i >= 0; i-- {
		l := x.m.Links[i]
		if target, err := os.Readlink(l.Path); err == nil && l.Owns(target) {
			res.Removed = append(res.Removed, l.Path)
		} else if err == nil || !errors.Is(err, fs.ErrNotExist) {
			res.Kept = append(res.Kept, l.Path)
		}
	}
	for i := len(x.m.Dirs) - 1; i >= 0; i-- {
		res.Removed = append(res.Removed, x.m.Dirs[i]+"/")
	}
	if c := x.m.Containerd; c != nil && c.Import != nil {
		if data, _, err := daemonjson.ReadFile(c.Config); err == nil {
			if out, ok := containerdcfg.RemoveImport(c.Config, data, *c.Import); ok {
				res.ContainerdDiff = textdiff.Unified("a"+c.Config, "b"+c.Config, string(data), string(out))
			}
		}
	}
	st := x.m.DaemonJSON
	if st == nil || !st.Registered() {
		return nil
	}
	clone := *st
	if err := registration.Reconcile(&clone); err != nil {
		return err
	}
	data, _, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		return err
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", st.Path, err)
	}
	if _, err := daemonjson.Revert(doc, clone.Changes); err != nil {
		return err
	}
	e := registration.Edit{Path: st.Path, Old: data, New: doc.Bytes()}
	if clone.Created && len(strings.TrimSpace(string(e.New))) == 0 {
		e.New = nil
	}
	res.DaemonJSONDiff = e.Diff()
	return nil
}
