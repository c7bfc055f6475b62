package plugin

import (
	"fmt"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// HostStateDirAuto asks Serve to find where the host sees the state directory.
const HostStateDirAuto = "auto"

// resolveHostStateDir turns Options.HostStateDir into the path the volume driver records.
//
// A managed plugin runs in a mount namespace of its own, and its state directory is the
// propagated mount Docker binds from <data-root>/plugins/<id>/propagated-mount: the paths Docker
// and the VM runtime see are those, not the plugin's. The bind's root in the plugin's mount table
// is that directory, relative to the root of its file system, which is the host's path where that
// file system is the host's / (or bound from it at the same path, as Docker's data root usually
// is). Elsewhere, pass the host's path: `docker plugin set NAME args="--host-state-dir=DIR"`.
func resolveHostStateDir(opt, stateDir string, logf func(string, ...any)) (string, error) {
	if opt != HostStateDirAuto {
		return opt, nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(stateDir))
	if err != nil {
		return "", fmt.Errorf("reading the mount table to find the state directory's host path: %w; pass --host-state-dir DIR", err)
	}
	dir, err := hostDirOf(mounts, stateDir)
	if err != nil {
		return "", err
	}
	if logf != nil {
		logf("the host sees the state directory %s as %s", stateDir, dir)
	}
	return dir, nil
}

// hostDirOf is the root of the last mount at stateDir (the one on top).
func hostDirOf(mounts []*mountinfo.Info, stateDir string) (string, error) {
	var top *mountinfo.Info
	for _, m := range mounts {
		if m.Mountpoint == stateDir {
			top = m
		}
	}
	if top == nil {
		return "", fmt.Errorf("--host-state-dir %s: nothing is mounted at the state directory %s (a managed plugin's propagated mount): pass the host's path instead", HostStateDirAuto, stateDir)
	}
	if top.Root == "/" || !filepath.IsAbs(top.Root) || filepath.Clean(top.Root) != top.Root {
		return "", fmt.Errorf("--host-state-dir %s: the mount at %s is the root of %s (%s), not a directory the host names: pass the host's path instead", HostStateDirAuto, stateDir, top.Source, top.FSType)
	}
	return top.Root, nil
}
