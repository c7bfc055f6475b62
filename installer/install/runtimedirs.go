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
	"time"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// What the installed runtime keeps outside the prefix: its state directory (one directory per
// running container, removed by the shim) and beside it <state_dir>.cache (VM templates, QEMU
// sandbox probes). Install records which of them did not exist yet; uninstall empties the cache
// and removes those once nothing of the install runs.

// recordRuntimeDirs records the runtime's directories for stateDir that do not exist yet: the
// runtime makes them for this install.
func (x *installer) recordRuntimeDirs(stateDir string) {
	for _, d := range []string{stateDir, runtimecache.Dir(stateDir)} {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			x.m.AddRuntimeDir(d)
		}
	}
}

// runtimeCacheDirs are the cache directories of the install's runtime: those of the state
// directories its configurations name (a user may have changed one), and those it recorded.
func runtimeCacheDirs(m *manifest.Manifest) []string {
	if m.Source == manifest.SourceUpstream {
		return nil // upstream's configuration and its caches are upstream's
	}
	var dirs []string
	add := func(d string) {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, c := range installedConfigs(m) {
		if sd, ok := configStateDir(c); ok {
			add(runtimecache.Dir(sd))
		}
	}
	for _, d := range m.RuntimeDirs {
		if sd, ok := strings.CutSuffix(d, runtimecache.Dir("")); ok && validStateDir(sd) {
			add(d)
		}
	}
	return dirs
}

// installedConfigs are the runtime configurations of every version (the flat layout's one).
func installedConfigs(m *manifest.Manifest) []string {
	if !m.Versioned() {
		return []string{layout.Layout{Prefix: m.Prefix}.Config()}
	}
	var cs []string
	for _, v := range m.Versions {
		cs = append(cs, layout.Layout{Prefix: m.Prefix, Version: v.ID}.Config())
	}
	return cs
}

// configStateDir is the state directory a configuration names, when it can be read and the
// directory is one anything may be removed under.
func configStateDir(path string) (string, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	c, err := config.Decode(data)
	if err != nil || !validStateDir(c.Runtime.StateDir) {
		return "", false
	}
	return c.Runtime.StateDir, true
}

func validStateDir(d string) bool {
	return filepath.IsAbs(d) && filepath.Clean(d) == d && d != "/"
}

// removeRuntimeDirs empties the runtime's caches (the pool of clones, VM templates, QEMU probes)
// and removes the runtime's directories install found absent, when they are empty. Only once
// nothing of the install runs: res.Containers are the containers Docker (or /proc, with
// containerd) found using the runtime, and the install's shims are looked for again in /proc,
// which also covers a Docker that could not be asked. The pool's waiting clones and its filler
// are not containers: they are stopped here.
func (x *installer) removeRuntimeDirs(ctx context.Context, res *UninstallResult) {
	caches := runtimeCacheDirs(x.m)
	if len(caches) == 0 && len(x.m.RuntimeDirs) == 0 {
		return
	}
	if running := append(slices.Clone(res.Containers), runningFrom("/proc", installDirs(x.m))...); len(running) > 0 {
		x.warn(fmt.Sprintf("VM containers still run (%s): the runtime's caches (%s) are left for them; remove them once they stop",
			describeContainers(running), strings.Join(caches, ", ")))
		return
	}
	for _, c := range caches {
		x.removePool(ctx, c, res)
		removed, err := runtimecache.Remove(c)
		res.Removed = append(res.Removed, removed...)
		if err != nil {
			x.warn(fmt.Sprintf("the runtime's cache %s: %v; left as is", c, err))
		}
	}
	for i := len(x.m.RuntimeDirs) - 1; i >= 0; i-- {
		x.removeEmptyDir(x.m.RuntimeDirs[i], runtimeDirLeft, res)
	}
	x.m.RuntimeDirs = nil
}

// poolRemoveTimeout bounds how long uninstall waits for a filler of the pool to finish (it holds
// the pool's lock while it restores clones: 16 clones under emulation take about a minute, the
// template's build one more).
const poolRemoveTimeout = 3 * time.Minute

// removePool stops the clones of cache's pool (their QEMU, their mounts) and removes it; what
// fails is a warning. A filler still running afterwards could restore clones again: it is
// waited for a moment, then reported.
func (x *installer) removePool(ctx context.Context, cache string, res *UninstallResult) {
	pool := runtimecache.PoolDir(cache)
	if _, err := os.Lstat(pool); err != nil {
		return
	}
	fillers := poolFillers("/proc", installDirs(x.m))
	if len(fillers) > 0 {
		x.o.progress(fmt.Sprintf("waiting for the filler of the pool of clones (pid %s) to finish", joinInts(fillers)))
	}
	rctx, cancel := context.WithTimeout(ctx, poolRemoveTimeout)
	defer cancel()
	if err := sandbox.RemovePool(rctx, cache); err != nil {
		x.warn(fmt.Sprintf("the pool of clones %s: %v; left as is", pool, err))
		return
	}
	res.Removed = append(res.Removed, pool+"/")
	for deadline := time.Now().Add(fillerExitWait); len(fillers) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		fillers = poolFillers("/proc", installDirs(x.m))
	}
	if len(fillers) > 0 {
		x.warn(fmt.Sprintf("a filler of the pool of clones still runs (pid %s) and may restore clones in %s again: stop it (kill %s), then the QEMU processes whose command line names %s, unmount what is mounted below it and remove it",
			joinInts(fillers), pool, strings.ReplaceAll(joinInts(fillers), ",", ""), pool))
	}
}

// fillerExitWait is how long a filler has to exit once the pool is removed: it let go of the
// pool's lock, so it has finished.
const fillerExitWait = 2 * time.Second

// runtimeDirLeft says why a runtime directory stays: another runtime configuration naming the
// same state directory may still have containers or caches there.
const runtimeDirLeft = "containers or caches of another runtime configuration with the same state directory"

// plannedRuntimeDirs lists what removeRuntimeDirs would remove (dry run).
func (x *installer) plannedRuntimeDirs(res *UninstallResult) {
	for _, c := range runtimeCacheDirs(x.m) {
		for _, d := range []string{runtimecache.PoolDir(c), runtimecache.TemplatesDir(c)} {
			if _, err := os.Lstat(d); err == nil {
				res.Removed = append(res.Removed, d+"/")
			}
		}
	}
	for i := len(x.m.RuntimeDirs) - 1; i >= 0; i-- {
		if _, err := os.Lstat(x.m.RuntimeDirs[i]); err == nil {
			res.Removed = append(res.Removed, x.m.RuntimeDirs[i]+"/")
		}
	}
}

// FactoryStatus is VM templating as the configuration in use sets it, and the templates the
// runtime keeps.
type FactoryStatus struct {
	// Template: [factory] template = true in the configuration in use.
	Template bool `json:"template"`
	// TemplatesDir is where the runtime keeps its templates (<state_dir>.cache/template).
	TemplatesDir string           `json:"templatesDir"`
	Templates    []TemplateStatus `json:"templates"`
	// Pool is how many clones of the template the configuration in use keeps waiting
	// ([factory] pool; 0: no pool).
	Pool int `json:"pool"`
	// PoolDir is where the runtime keeps them (<state_dir>.cache/pool), PoolFill what is there,
	// per template, and PoolFillers the processes filling it.
	PoolDir     string     `json:"poolDir,omitempty"`
	PoolFill    []PoolFill `json:"poolFill"`
	PoolFillers []int      `json:"poolFillers,omitempty"`
	// Error is why the templates or the pool could not be listed.
	Error string `json:"error,omitempty"`
}

// PoolFill counts the clones of one template in the pool by state.
type PoolFill struct {
	Key string `json:"key"`
	// Waiting: restored, warm, ready to be taken.
	Waiting int `json:"waiting"`
	// Starting: being restored and warmed (or left half-made by a filler that died).
	Starting int `json:"starting"`
	// Taken: given to a container, which runs in it.
	Taken int `json:"taken"`
}

// PoolWaiting is how many clones of any template wait in the pool.
func (f *FactoryStatus) PoolWaiting() int {
	n := 0
	for _, p := range f.PoolFill {
		n += p.Waiting
	}
	return n
}

// TemplateStatus is one VM template.
type TemplateStatus struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	// Ready: clones are made of it.
	Ready     bool `json:"ready"`
	MemoryMiB int  `json:"memoryMiB,omitempty"`
	VCPUs     int  `json:"vcpus,omitempty"`
	// Created is when it was built, AgeSeconds how long ago; LastUsed when the last clone was
	// made (zero when it is not ready).
	Created    *time.Time `json:"created,omitempty"`
	AgeSeconds int64      `json:"ageSeconds,omitempty"`
	LastUsed   *time.Time `json:"lastUsed,omitempty"`
	// MemoryBytes is what its memory file takes on disk (allocated blocks, not apparent size).
	MemoryBytes int64 `json:"memoryBytes"`
	// Failed is why its last build failed (the runtime retries after a while; containers boot
	// cold meanwhile).
	Failed string `json:"failed,omitempty"`
}

// factoryStatus reports templating and the pool from the configuration in use, and the templates
// and pooled clones on disk.
func factoryStatus(c *config.Config, now time.Time) *FactoryStatus {
	f := &FactoryStatus{Template: c.Factory.Template, Pool: c.Factory.Pool, Templates: []TemplateStatus{}, PoolFill: []PoolFill{}}
	if !validStateDir(c.Runtime.StateDir) {
		return f
	}
	cache := runtimecache.Dir(c.Runtime.StateDir)
	f.TemplatesDir = runtimecache.TemplatesDir(cache)
	var errs []string
	ts, err := runtimecache.Templates(cache)
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, t := range ts {
		f.Templates = append(f.Templates, templateStatus(t, now))
	}
	f.PoolDir = runtimecache.PoolDir(cache)
	slots, err := runtimecache.PoolSlots(cache)
	if err != nil {
		errs = append(errs, err.Error())
	}
	f.PoolFill = poolFill(slots)
	f.Error = strings.Join(errs, "; ")
	return f
}

// poolFill counts slots by template and state, in the order PoolSlots lists them.
func poolFill(slots []runtimecache.PoolSlot) []PoolFill {
	out := []PoolFill{}
	for _, s := range slots {
		i := slices.IndexFunc(out, func(p PoolFill) bool { return p.Key == s.Key })
		if i < 0 {
			out = append(out, PoolFill{Key: s.Key})
			i = len(out) - 1
		}
		switch s.State {
		case runtimecache.SlotStateReady:
			out[i].Waiting++
		case runtimecache.SlotStateTaken:
			out[i].Taken++
		default:
			out[i].Starting++
		}
	}
	return out
}

func templateStatus(t runtimecache.Template, now time.Time) TemplateStatus {
	ts := TemplateStatus{Key: t.Key, Path: t.Dir, Ready: t.Ready, MemoryMiB: t.MemoryMiB, VCPUs: t.VCPUs,
		MemoryBytes: t.MemoryBytes, Failed: t.Failed}
	if !t.Created.IsZero() {
		created := t.Created.UTC()
		ts.Created, ts.AgeSeconds = &created, max(int64(now.Sub(created)/time.Second), 0)
	}
	if t.Ready && !t.LastUsed.IsZero() {
		used := t.LastUsed.UTC()
		ts.LastUsed = &used
	}
	return ts
}
