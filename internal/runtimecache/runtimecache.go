// Package runtimecache is the layout of what kata-deploy's runtime keeps in its cache directory,
// <state_dir>.cache: the VM templates ([factory] template = true), the pool of clones made of them
// ([factory] pool) and the QEMU sandbox probes.
// The runtime writes it (runtime/sandbox/factory.go, runtime/hypervisor/seccomp.go) with these
// names; the installer reads it for status and removes it at uninstall:
//
//	<state_dir>.cache/
//	  qemu-sandbox-<hash>.json       which -sandbox options a QEMU binary supports
//	  template/
//	    .lock                        serialises template builds
//	    .build-<key>/                a build in progress (or left by a dead shim)
//	    <key>/memory                 the template VM's RAM, mapped copy-on-write by clones
//	    <key>/state                  its saved device state
//	    <key>/ready                  JSON {key, memoryMiB, vcpus, created}, written last; a clone touches it
//	    <key>/failed                 why the last build failed
//	  pool/                          the pool of clones ([factory] pool = N): pool.go
package runtimecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Names in the cache directory.
const (
	cacheSuffix      = ".cache"
	templatesDirName = "template"
	// TemplateMemory, TemplateState, TemplateReady and TemplateFailed are the files of a
	// template's directory (<cache>/template/<key>/); the ready file (ReadyFile) is written last.
	TemplateMemory = "memory"
	TemplateState  = "state"
	TemplateReady  = "ready"
	TemplateFailed = "failed"
	// TemplateLock serialises template builds; TemplateBuildPrefix starts the name of a build in
	// progress (or one a dead shim left).
	TemplateLock        = ".lock"
	TemplateBuildPrefix = ".build-"
	// SandboxProbePrefix starts the names of the QEMU sandbox probes (<prefix><hash>.json, written
	// through a temporary "."+<prefix>* file).
	SandboxProbePrefix = "qemu-sandbox-"
	sandboxProbeGlob   = SandboxProbePrefix + "*.json"
	sandboxProbeTemps  = "." + SandboxProbePrefix + "*"
)

// maxFailed bounds what is read of a failed file: it is one error message.
const maxFailed = 4096

// Dir is the runtime's cache directory for a state directory.
func Dir(stateDir string) string { return stateDir + cacheSuffix }

// TemplatesDir is where the runtime keeps its VM templates.
func TemplatesDir(cacheDir string) string { return filepath.Join(cacheDir, templatesDirName) }

// Template is one VM template directory.
type Template struct {
	Key string
	Dir string
	// Ready: the build finished; clones are made of it.
	Ready bool
	// MemoryMiB, VCPUs and Created are what the ready file says.
	MemoryMiB int
	VCPUs     int
	Created   time.Time
	// LastUsed is when the last clone was made (each clone touches the ready file).
	LastUsed time.Time
	// MemoryBytes is what the memory file takes on disk (allocated blocks): the RAM the guest
	// touched before the snapshot, not the file's apparent size (the VM's whole RAM).
	MemoryBytes int64
	// Failed is why the last build failed ("" when none did).
	Failed string
}

// ReadyFile is the content of a template's ready file.
type ReadyFile struct {
	Key       string    `json:"key"`
	MemoryMiB int       `json:"memoryMiB"`
	VCPUs     int       `json:"vcpus"`
	Created   time.Time `json:"created"`
}

// Templates lists the templates under cacheDir, by key; none when there is no template
// directory. Builds in progress (.build-*) are not templates yet.
func Templates(cacheDir string) ([]Template, error) {
	root := TemplatesDir(cacheDir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the VM templates: %w", err)
	}
	var out []Template
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out = append(out, readTemplate(filepath.Join(root, e.Name())))
	}
	return out, nil
}

// readTemplate reads what it can of one template directory: a broken template is shown as
// not ready, not as an error.
func readTemplate(dir string) Template {
	t := Template{Key: filepath.Base(dir), Dir: dir}
	if fi, err := os.Lstat(filepath.Join(dir, TemplateReady)); err == nil && fi.Mode().IsRegular() {
		t.LastUsed = fi.ModTime()
		var r ReadyFile
		if b, err := readSmall(filepath.Join(dir, TemplateReady)); err == nil && json.Unmarshal(b, &r) == nil && r.Key == t.Key {
			t.Ready, t.MemoryMiB, t.VCPUs, t.Created = true, r.MemoryMiB, r.VCPUs, r.Created
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, TemplateMemory)); err == nil && fi.Mode().IsRegular() {
		t.MemoryBytes = fi.Sys().(*syscall.Stat_t).Blocks * 512 // st_blocks counts 512-byte units
	} else {
		t.Ready = false // a clone needs it
	}
	if b, err := readSmall(filepath.Join(dir, TemplateFailed)); err == nil {
		t.Failed = strings.TrimSpace(string(b))
	}
	return t
}

// readSmall reads at most maxFailed bytes of a regular file, following no link.
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxFailed))
}

// ErrBuilding is returned by Remove while a runtime builds a template (a container is starting).
var ErrBuilding = errors.New("a VM template is being built (a container is starting)")

// Remove removes the runtime's entries of cacheDir: the template directory (under its lock, so
// that no build is cut off) and the QEMU sandbox probes. It returns what it removed; the
// directory itself stays (the caller knows whether it is kata-deploy's). cacheDir must be a
// directory, not a link: it is checked before anything under it is removed.
func Remove(cacheDir string) ([]string, error) {
	if !filepath.IsAbs(cacheDir) || filepath.Clean(cacheDir) != cacheDir || cacheDir == "/" {
		return nil, fmt.Errorf("the runtime's cache directory %q is not a clean absolute path", cacheDir)
	}
	fi, err := os.Lstat(cacheDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a directory (%s): the runtime did not make it; left as is", cacheDir, fi.Mode().Type())
	}
	var removed []string
	if ok, err := removeTemplates(TemplatesDir(cacheDir)); err != nil {
		return removed, err
	} else if ok {
		removed = append(removed, TemplatesDir(cacheDir)+"/")
	}
	for _, glob := range []string{sandboxProbeGlob, sandboxProbeTemps} {
		matches, _ := filepath.Glob(filepath.Join(cacheDir, glob))
		slices.Sort(matches)
		for _, m := range matches {
			if err := os.Remove(m); err == nil {
				removed = append(removed, m)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return removed, err
			}
		}
	}
	return removed, nil
}

// removeTemplates removes the template directory while holding its lock; false when there was
// none.
func removeTemplates(root string) (bool, error) {
	fi, err := os.Lstat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory (%s): left as is", root, fi.Mode().Type())
	}
	lock, err := os.OpenFile(filepath.Join(root, TemplateLock), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("the VM templates' lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return false, fmt.Errorf("%s: %w", root, ErrBuilding)
	} else if err != nil {
		return false, fmt.Errorf("the VM templates' lock: %w", err)
	}
	if err := os.RemoveAll(root); err != nil {
		return false, fmt.Errorf("removing the VM templates: %w", err)
	}
	return true, nil
}
