package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/upstream"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Upstream install steps, as passed to Options.AfterStep.
const (
	StepUpstreamExtracted = "upstream-extracted" // the release is in the staging directory, recorded
	StepUpstreamAside     = "upstream-aside"     // a directory that was at /opt/kata is moved aside (--force)
	StepUpstreamPlaced    = "upstream-placed"    // the release is renamed to /opt/kata
)

// UpstreamInstallSteps lists every point at which an install --from calls AfterStep on a fresh
// install with Docker and no directory in the way.
var UpstreamInstallSteps = []string{StepPrefix, StepUpstreamExtracted, StepUpstreamPlaced,
	"daemon-json-journaled", "daemon-json-written", StepRegistered, StepInstalled, StepSmoke}

// upstreamPlan is the install of an upstream release.
type upstreamPlan struct {
	tarball source
	release upstream.Release
	dir     string // where the release goes (/opt/kata)
	staging string // where it is extracted first, beside dir
	extract bool   // the release must be extracted and placed
	aside   string // a directory at dir that is not kata-deploy's, moved aside first (--force)
}

func (u *upstreamPlan) changes() bool { return u.extract }

func (u *upstreamPlan) shim() string   { return filepath.Join(u.dir, upstream.ShimPath) }
func (u *upstreamPlan) config() string { return filepath.Join(u.dir, upstream.ConfigPath) }

// The release's own shim and configuration are registered: there are no versions.
func (u *upstreamPlan) entryShim(*plan) string   { return u.shim() }
func (u *upstreamPlan) entryConfig(*plan) string { return u.config() }

func (u *upstreamPlan) report(res *Result) { res.Upstream, res.UpstreamDir = u.release.Version, u.dir }

func (u *upstreamPlan) steps(x *installer) []func(context.Context, *plan) error {
	return []func(context.Context, *plan) error{x.extractUpstream, x.placeUpstream}
}

func (u *upstreamPlan) cleanupActions(*plan) []Action { return nil }

// makeUpstreamPlan plans the install of the release tarball o.From.
func (x *installer) makeUpstreamPlan(ctx context.Context, m *manifest.Manifest, loc dockerd.ConfigLocation) (*plan, error) {
	rel, err := upstream.ParseName(x.o.From)
	if err != nil {
		return nil, err
	}
	if err := rel.CheckArch(upstream.HostArch()); err != nil {
		return nil, err
	}
	src, err := sourceOf(x.o.From)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	dir := x.o.KataDir
	u := &upstreamPlan{tarball: src, release: rel, dir: dir,
		staging: filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".kata-deploy-staging")}
	if err := x.checkUpstreamManifest(m, u); err != nil {
		return nil, err
	}
	if err := x.planUpstreamDir(m, u); err != nil {
		return nil, err
	}
	p := &plan{upstream: u, artifacts: u, layout: layout.Layout{Prefix: x.o.Prefix}}
	if p.newDirs, err = planDirs(layout.Layout{Prefix: x.o.Prefix, Version: "-"}); err != nil {
		return nil, err
	}
	p.newDirs = slices.DeleteFunc(p.newDirs, func(d string) bool { return d != x.o.Prefix })
	p.adoptPrefix = m == nil && isEmptyDir(x.o.Prefix)
	if p.engine, err = x.planEngine(ctx, p, m, loc); err != nil {
		return nil, err
	}
	return p, nil
}

// checkUpstreamManifest refuses to mix an upstream release with what the prefix records.
func (x *installer) checkUpstreamManifest(m *manifest.Manifest, u *upstreamPlan) error {
	switch {
	case m == nil:
		return nil
	case m.Source != manifest.SourceUpstream:
		return fmt.Errorf("%s holds kata-deploy's own runtime, not an upstream release: uninstall it first, or install into another --prefix", x.o.Prefix)
	case m.Upstream == nil:
		return nil // killed before the release was recorded
	case m.Upstream.Dir != u.dir:
		return fmt.Errorf("the release recorded under %s is in %s, not %s: uninstall it first", x.o.Prefix, m.Upstream.Dir, u.dir)
	case m.Upstream.SHA256 != u.tarball.SHA256:
		return fmt.Errorf("%s holds another release (%s, version %s): uninstall it first, then install this one (an upstream release is not upgraded in place)",
			x.o.Prefix, filepath.Base(m.Upstream.Tarball), m.Upstream.Version)
	}
	return nil
}

// planUpstreamDir decides whether the release is extracted, and what happens to a directory in
// the way.
func (x *installer) planUpstreamDir(m *manifest.Manifest, u *upstreamPlan) error {
	var rec *manifest.Upstream
	if m != nil {
		rec = m.Upstream
	}
	if rec != nil && rec.Placed {
		x.warnChangedUpstream(m)
		return nil
	}
	u.extract = true
	if rec != nil && rec.Aside != "" {
		u.aside = rec.Aside // journaled by a run killed before or after the move
	}
	fi, err := os.Lstat(u.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case u.aside != "":
		return nil
	case fi.IsDir() && isEmptyDir(u.dir):
		// An empty directory is moved aside like any other, without --force: uninstall puts it
		// back, and the host is as it was.
	case !x.o.Replace.Foreign:
		return fmt.Errorf("%s exists and kata-deploy did not install it (an upstream Kata installed by hand?): remove it, or pass --replace-foreign or --force (it is moved aside and put back by uninstall)", u.dir)
	}
	u.aside = u.dir + ".kata-deploy-orig-" + x.now().UTC().Format("20060102T150405Z")
	return nil
}

// warnChangedUpstream reports files of the release changed since install: they are left.
func (x *installer) warnChangedUpstream(m *manifest.Manifest) {
	for _, f := range m.Files {
		if !under(f.Path, []string{m.Upstream.Dir}) {
			continue
		}
		if sum, _, err := fileSum(f.Path); err != nil || sum != f.SHA256 {
			x.warn(fmt.Sprintf("%s is missing or was changed since install; left as is (uninstall, then install again, to restore the release)", f.Path))
		}
	}
}

func (u *upstreamPlan) actions(*plan, options) []Action {
	if !u.extract {
		return nil
	}
	var as []Action
	if u.aside != "" {
		as = append(as, Action{Op: "move-aside", Target: u.dir, Detail: "to " + u.aside + " (--replace-foreign or --force); uninstall puts it back"})
	}
	return append(as, Action{Op: "extract", Target: u.dir,
		Detail: fmt.Sprintf("Kata Containers %s (%s), every entry checked, through %s", u.release.Version, filepath.Base(u.tarball.Path), u.staging)})
}

// extractUpstream extracts the release into the staging directory and records every entry.
func (x *installer) extractUpstream(ctx context.Context, p *plan) error {
	u := p.upstream
	if !u.extract {
		return nil
	}
	x.m.Source = manifest.SourceUpstream
	x.m.Upstream = &manifest.Upstream{Tarball: u.tarball.Path, SHA256: u.tarball.SHA256, Version: u.release.Version,
		Dir: u.dir, Staging: u.staging, Aside: u.aside, Shim: u.shim(), Config: u.config()}
	if !slices.Contains(x.m.Scratch, u.staging) {
		x.m.Scratch = append(x.m.Scratch, u.staging)
	}
	if err := x.save(); err != nil {
		return err
	}
	if err := os.RemoveAll(u.staging); err != nil {
		return fmt.Errorf("clearing %s: %w", u.staging, err)
	}
	x.o.progress(fmt.Sprintf("extracting %s into %s, checking every entry", filepath.Base(u.tarball.Path), u.staging))
	ex, err := upstream.Extract(ctx, u.tarball.Path, u.staging, upstream.DefaultLimits())
	if err != nil {
		_ = os.RemoveAll(u.staging)
		x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool { return s == u.staging })
		x.m.Upstream = nil
		x.abandonIfEmpty()
		return fmt.Errorf("%w: nothing was installed from it", err)
	}
	if ex.Version != "" {
		x.m.Upstream.Version = ex.Version
	}
	x.recordRelease(u.dir, ex.Entries)
	return x.done(StepUpstreamExtracted)
}

// recordRelease records the release's entries at their final paths (not placed yet).
func (x *installer) recordRelease(dir string, entries []upstream.Entry) {
	x.m.AddDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, filepath.FromSlash(e.Path))
		switch e.Type {
		case upstream.TypeDir:
			x.m.AddDir(path)
		case upstream.TypeFile:
			x.m.PutFile(manifest.File{Path: path, SHA256: e.SHA256, Size: e.Size, Mode: e.Mode})
		case upstream.TypeSymlink:
			x.m.PutLink(manifest.Link{Path: path, Target: e.Target})
		}
	}
}

// placeUpstream moves a directory in the way aside, then renames the staging directory to dir.
func (x *installer) placeUpstream(_ context.Context, p *plan) error {
	u := p.upstream
	if !u.extract {
		return nil
	}
	if u.aside != "" {
		if _, err := os.Lstat(u.dir); err == nil {
			if err := renameSynced(u.dir, u.aside); err != nil {
				return fmt.Errorf("moving %s aside: %w", u.dir, err)
			}
			x.after(StepUpstreamAside)
		}
	}
	if err := renameSynced(u.staging, u.dir); err != nil {
		return fmt.Errorf("moving the release to %s: %w", u.dir, err)
	}
	x.m.Upstream.Placed = true
	x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool { return s == u.staging })
	return x.done(StepUpstreamPlaced)
}

// reconcileUpstream settles a placement a killed run may have made without recording it: the
// staging directory is gone only once renamed to Dir.
func reconcileUpstream(m *manifest.Manifest) {
	u := m.Upstream
	if u == nil || u.Placed || u.Staging == "" {
		return
	}
	recorded := slices.ContainsFunc(m.Files, func(f manifest.File) bool { return under(f.Path, []string{u.Dir}) })
	_, stagingErr := os.Lstat(u.Staging)
	_, dirErr := os.Lstat(u.Dir)
	if recorded && errors.Is(stagingErr, fs.ErrNotExist) && dirErr == nil {
		u.Placed = true
		m.Scratch = slices.DeleteFunc(m.Scratch, func(s string) bool { return s == u.Staging })
	}
}

// forgetUnplaced drops the records of a release that never reached Dir: its files are in the
// staging directory (removed as scratch), and what is at Dir is not kata-deploy's.
func forgetUnplaced(m *manifest.Manifest) {
	u := m.Upstream
	if u == nil || u.Placed {
		return
	}
	dir := []string{u.Dir}
	m.Files = slices.DeleteFunc(m.Files, func(f manifest.File) bool { return under(f.Path, dir) })
	m.Links = slices.DeleteFunc(m.Links, func(l manifest.Link) bool { return under(l.Path, dir) })
	m.Dirs = slices.DeleteFunc(m.Dirs, func(d string) bool { return under(d, dir) })
}

// restoreAside puts back the directory install moved aside, once the release is gone from Dir.
func (x *installer) restoreAside(res *UninstallResult) {
	u := x.m.Upstream
	if u == nil || u.Aside == "" {
		return
	}
	if _, err := os.Lstat(u.Aside); err != nil {
		u.Aside = ""
		return
	}
	if _, err := os.Lstat(u.Dir); err == nil {
		x.warn(fmt.Sprintf("%s waits to come back to %s, but %s is not empty: left both", u.Aside, u.Dir, u.Dir))
		return
	}
	if err := renameSynced(u.Aside, u.Dir); err != nil {
		x.warn(fmt.Sprintf("could not move %s back to %s: %v", u.Aside, u.Dir, err))
		return
	}
	res.Restored = append(res.Restored, u.Dir)
	u.Aside = ""
}

// abandonIfEmpty removes the manifest (and the prefix install created) of a first install that
// failed before installing anything: a refused tarball leaves no trace.
func (x *installer) abandonIfEmpty() {
	m := x.m
	if len(m.Files) > 0 || len(m.Links) > 0 || len(m.Scratch) > 0 || m.DaemonJSON.Registered() || m.Containerd != nil ||
		slices.ContainsFunc(m.Dirs, func(d string) bool { return d != m.Prefix }) {
		return
	}
	if err := m.Remove(); err != nil {
		return
	}
	x.abandoned = true
	if slices.Contains(m.Dirs, m.Prefix) {
		_ = os.Remove(m.Prefix)
	}
}
