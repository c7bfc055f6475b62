package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Switch steps, as passed to Options.AfterStep.
const (
	StepSwitchJournaled = "switch-journaled" // the switch of current is journaled, not yet made
	StepSwitched        = "switched"         // current points at the new version, recorded
	StepSwitchedBack    = "switched-back"    // the new version failed its smoke test: current is back
	StepPruned          = "pruned"           // versions no longer needed are removed
)

// currentTmpName is the symlink made beside current and renamed over it.
const currentTmpName = ".current.tmp"

// versionID names a version after its inputs: the same shim, guest image and configuration give
// the same id, so an install with unchanged inputs finds its version already in place.
func versionID(shimSHA, imageKey, configSHA string) string {
	return bytesSum([]byte("kata-deploy version\nshim " + shimSHA + "\nimage " + imageKey + "\nconfig " + configSHA + "\n"))[:12]
}

// validVersionID reports whether id is safe as a directory name: a manifest is read from disk,
// and its ids become paths.
func validVersionID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '.' || id[0] == '-' {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// versionTarget is what <prefix>/current holds for version id: a relative link, so that the
// prefix can be moved or bind-mounted elsewhere.
func versionTarget(id string) string { return layout.VersionsDirName + "/" + id }

// readCurrent returns the target of <prefix>/current ("" when absent).
func readCurrent(prefix string) (string, error) {
	link := layout.Layout{Prefix: prefix}.CurrentLink()
	fi, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink == 0:
		return "", fmt.Errorf("%s is not a symlink (kata-deploy switches versions with a symlink there): move it away, or choose another --prefix", link)
	}
	return os.Readlink(link)
}

// checkManifestVersions refuses a manifest whose version ids would not be safe paths.
func checkManifestVersions(m *manifest.Manifest) error {
	ids := []string{m.Current, m.Previous}
	for _, v := range m.Versions {
		ids = append(ids, v.ID)
	}
	if m.Switch != nil {
		ids = append(ids, m.Switch.To, m.Switch.Previous)
	}
	for _, id := range ids {
		if id != "" && !validVersionID(id) {
			return fmt.Errorf("%s names version %q, which is not a valid version id: the manifest is damaged", manifest.Path(m.Prefix), id)
		}
	}
	return nil
}

// reconcileSwitch settles a switch of current that was journaled and perhaps not recorded: the
// link on disk says whether the rename happened.
func reconcileSwitch(m *manifest.Manifest) error {
	if err := checkManifestVersions(m); err != nil {
		return err
	}
	if m.Switch == nil {
		return nil
	}
	link := layout.Layout{Prefix: m.Prefix}.CurrentLink()
	target, err := readCurrent(m.Prefix)
	if err != nil {
		return err
	}
	rec := m.Link(link)
	if target == versionTarget(m.Switch.To) {
		m.Current, m.Previous = m.Switch.To, m.Switch.Previous
		if rec != nil {
			rec.Target = target
		}
	}
	if rec != nil {
		rec.PendingTarget = ""
	}
	m.Switch = nil
	return nil
}

// switchCurrent points <prefix>/current at version to, atomically, journaled: the intent is
// saved first, the new link is made beside the old one and renamed over it, then recorded.
func (x *installer) switchCurrent(to, previous, step string) error {
	l := layout.Layout{Prefix: x.m.Prefix}
	link, tmp := l.CurrentLink(), filepath.Join(x.m.Prefix, currentTmpName)
	target := versionTarget(to)
	r := manifest.Link{Path: link}
	if rec := x.m.Link(link); rec != nil {
		r = *rec
	}
	r.PendingTarget = target
	x.m.PutLink(r)
	x.m.Switch = &manifest.Switch{To: to, Previous: previous}
	if !slices.Contains(x.m.Scratch, tmp) {
		x.m.Scratch = append(x.m.Scratch, tmp)
	}
	if err := x.save(); err != nil {
		return err
	}
	x.after(StepSwitchJournaled)
	if err := replaceSymlink(target, link, tmp); err != nil {
		return fmt.Errorf("switching %s to %s: %w", link, target, err)
	}
	rec := x.m.Link(link)
	rec.Target, rec.PendingTarget = target, ""
	x.m.Current, x.m.Previous, x.m.Switch = to, previous, nil
	x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool { return s == tmp })
	return x.done(step)
}

// replaceSymlink points link at target atomically: a new symlink made beside it is renamed over
// it, so a reader sees the old target or the new one, never no link.
func replaceSymlink(target, link, tmp string) error {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(link))
}

// keptRoots are the version directories an install keeps: the current and the previous one.
func keptRoots(prefix string, ids ...string) []string {
	var roots []string
	for _, id := range ids {
		if id != "" {
			roots = append(roots, layout.Layout{Prefix: prefix, Version: id}.Root())
		}
	}
	return roots
}

func under(path string, roots []string) bool {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// pruneCandidates lists what a prune would remove, keeping versions keep: the other versions,
// and files of the flat layout a migration left behind.
func pruneCandidates(m *manifest.Manifest, keep ...string) (versions []string, flatFiles []string) {
	for _, v := range m.Versions {
		if !slices.Contains(keep, v.ID) {
			versions = append(versions, v.ID)
		}
	}
	roots := append(keptRoots(m.Prefix, keep...), pluginRoot(m.Prefix)) // the plugin is no version's
	versionsDir := layout.Layout{Prefix: m.Prefix}.VersionsDir()
	for _, f := range m.Files {
		// Files outside the prefix (a containerd drop-in, an upstream release) are no version's.
		if under(f.Path, []string{m.Prefix}) && !under(f.Path, roots) && !under(f.Path, []string{versionsDir}) {
			flatFiles = append(flatFiles, f.Path)
		}
	}
	return versions, flatFiles
}

// prune removes what the install no longer uses: every version other than the current and the
// previous one, and what a migration left of the flat layout. Files changed since install are
// kept (and reported), like uninstall does.
func (x *installer) prune() error {
	versions, flat := pruneCandidates(x.m, x.m.Current, x.m.Previous)
	if len(versions) == 0 && len(flat) == 0 {
		return nil
	}
	roots := append(keptRoots(x.m.Prefix, x.m.Current, x.m.Previous), pluginRoot(x.m.Prefix))
	var scratch UninstallResult
	var files []manifest.File
	for i := len(x.m.Files) - 1; i >= 0; i-- {
		f := x.m.Files[i]
		if !under(f.Path, []string{x.m.Prefix}) || under(f.Path, roots) || x.removeFile(f, &scratch) == "kept" {
			files = append(files, f)
		}
	}
	slices.Reverse(files)
	x.m.Files = files
	x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool {
		if under(s, roots) || s == filepath.Join(x.m.Prefix, currentTmpName) || !under(s, []string{x.m.Prefix}) {
			return false
		}
		_ = os.RemoveAll(s)
		return true
	})
	x.pruneDirs(roots)
	for _, id := range versions {
		x.m.DropVersion(id)
		x.res.Pruned = append(x.res.Pruned, id)
	}
	if len(flat) > 0 {
		x.m.Image = nil
		x.res.Pruned = append(x.res.Pruned, "flat layout")
	}
	return x.done(StepPruned)
}

// pruneDirs removes the recorded directories outside roots, deepest first, except the prefix and
// the versions directory; one that is not empty is kept, with a warning.
func (x *installer) pruneDirs(roots []string) {
	l := layout.Layout{Prefix: x.m.Prefix}
	var dirs []string
	for i := len(x.m.Dirs) - 1; i >= 0; i-- {
		d := x.m.Dirs[i]
		if d == l.Prefix || d == l.VersionsDir() || under(d, roots) || !under(d, []string{l.Prefix}) {
			dirs = append(dirs, d)
			continue
		}
		err := os.Remove(d)
		switch {
		case err == nil || errors.Is(err, fs.ErrNotExist):
		case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
			x.warn(fmt.Sprintf("%s is not empty (files kata-deploy did not install, or changed ones): left in place", d))
			dirs = append(dirs, d)
		default:
			x.warn(fmt.Sprintf("could not remove %s: %v", d, err))
			dirs = append(dirs, d)
		}
	}
	slices.Reverse(dirs)
	x.m.Dirs = dirs
}

// versionFilesIntact checks that every recorded file of version id is on disk as installed.
func versionFilesIntact(m *manifest.Manifest, id string) error {
	roots := keptRoots(m.Prefix, id)
	n := 0
	for _, f := range m.Files {
		if !under(f.Path, roots) {
			continue
		}
		n++
		cur, _, err := fileSum(f.Path)
		switch {
		case err != nil:
			return err
		case cur == "":
			return fmt.Errorf("%s is missing", f.Path)
		case cur != f.SHA256:
			return fmt.Errorf("%s was changed since install", f.Path)
		}
	}
	if n == 0 {
		return fmt.Errorf("no file of version %s is recorded", id)
	}
	return nil
}
