package install

import (
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

// removeRuntimeDirs empties the runtime's caches (VM templates, QEMU probes) and removes the
// runtime's directories install found absent, when they are empty. Only once nothing of the
// install runs: res.Containers are the containers Docker (or /proc, with containerd) found
// using the runtime, and the install's shims are looked for again in /proc, which also covers a
// Docker that could not be asked.
func (x *installer) removeRuntimeDirs(res *UninstallResult) {
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

// runtimeDirLeft says why a runtime directory stays: another runtime configuration naming the
// same state directory may still have containers or caches there.
const runtimeDirLeft = "containers or caches of another runtime configuration with the same state directory"

// plannedRuntimeDirs lists what removeRuntimeDirs would remove (dry run).
func (x *installer) plannedRuntimeDirs(res *UninstallResult) {
	for _, c := range runtimeCacheDirs(x.m) {
		if _, err := os.Lstat(runtimecache.TemplatesDir(c)); err == nil {
			res.Removed = append(res.Removed, runtimecache.TemplatesDir(c)+"/")
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
	// Error is why the templates could not be listed.
	Error string `json:"error,omitempty"`
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

// factoryStatus reports templating from the configuration in use, and the templates on disk.
func factoryStatus(c *config.Config, now time.Time) *FactoryStatus {
	f := &FactoryStatus{Template: c.Factory.Template, Templates: []TemplateStatus{}}
	if !validStateDir(c.Runtime.StateDir) {
		return f
	}
	cache := runtimecache.Dir(c.Runtime.StateDir)
	f.TemplatesDir = runtimecache.TemplatesDir(cache)
	ts, err := runtimecache.Templates(cache)
	if err != nil {
		f.Error = err.Error()
	}
	for _, t := range ts {
		f.Templates = append(f.Templates, templateStatus(t, now))
	}
	return f
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
