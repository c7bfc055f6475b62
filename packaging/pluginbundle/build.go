package pluginbundle

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
)

// Tool is a program kata-plugins runs, and the Debian package that has it.
type Tool struct{ Name, Package string }

// Tools are what kata-plugins runs: mkfs and the read-only check of each file system, and mount
// (-o loop) for runc containers.
var Tools = []Tool{{"mkfs.ext4", "e2fsprogs"}, {"e2fsck", "e2fsprogs"}, {"mkfs.xfs", "xfsprogs"}, {"xfs_repair", "xfsprogs"}, {"mount", "mount"}}

// toolDirs are searched for the tools, in order.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// libDirs are searched for shared libraries, in the dynamic loader's order on Debian (multiarch
// first).
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// rootfsDirs are the directories the plugin needs in its rootfs.
var rootfsDirs = []string{"/run/docker/plugins", directvolume.Root, StateDir, "/dev", "/proc", "/sys", "/tmp", "/etc"}

// Options say what goes into the bundle.
type Options struct {
	// Plugins is a static kata-plugins (CGO_ENABLED=0).
	Plugins string
	// OutDir is the bundle: OutDir/config.json and OutDir/rootfs. It is replaced.
	OutDir string
	// Tools are the programs copied with their libraries (Tools when nil).
	Tools []Tool
}

// Build writes the bundle. On failure nothing is left at OutDir.
func Build(o Options) error {
	if o.Tools == nil {
		o.Tools = Tools
	}
	if err := checkStatic(o.Plugins); err != nil {
		return err
	}
	o.OutDir = filepath.Clean(o.OutDir)
	if err := replaceable(o.OutDir); err != nil {
		return err
	}
	stage := o.OutDir + ".partial"
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	if err := build(o, stage); err != nil {
		os.RemoveAll(stage)
		return err
	}
	if err := os.RemoveAll(o.OutDir); err != nil {
		os.RemoveAll(stage)
		return err
	}
	if err := os.Rename(stage, o.OutDir); err != nil {
		os.RemoveAll(stage)
		return err
	}
	return nil
}

// replaceable refuses an output directory that holds anything but an earlier bundle: it is
// removed and replaced whole.
func replaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "config.json" && e.Name() != "rootfs" {
			return fmt.Errorf("%s holds %s, not only a plugin bundle (config.json, rootfs): choose an empty or new output directory", dir, e.Name())
		}
	}
	return nil
}

func build(o Options, dir string) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range rootfsDirs {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(o.Plugins, filepath.Join(rootfs, Binary), 0o755); err != nil {
		return err
	}
	libs := map[string]bool{}
	for _, t := range o.Tools {
		path, err := findTool(t)
		if err != nil {
			return err
		}
		if err := copyFile(path, filepath.Join(rootfs, path), 0o755); err != nil {
			return err
		}
		if err := libraries(path, libs); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, lib := range sortedKeys(libs) {
		if err := copyFile(lib, filepath.Join(rootfs, lib), 0o755); err != nil {
			return err
		}
	}
	// mke2fs's defaults (features, inode sizes) as the host has them; it has built-in ones too.
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		if err := copyFile("/etc/mke2fs.conf", filepath.Join(rootfs, "etc/mke2fs.conf"), 0o644); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(Config(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(data, '\n'), 0o644)
}

// checkStatic refuses a kata-plugins that needs a dynamic loader: the rootfs has none for it.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("kata-plugins %s: %w (build it with CGO_ENABLED=0 go build ./cmd/kata-plugins)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("kata-plugins %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

func findTool(t Tool) (string, error) {
	for _, d := range toolDirs {
		p := filepath.Join(d, t.Name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed here (apt-get install %s): the bundle copies it from this machine", t.Name, t.Package)
}

// libraries adds the dynamic loader and every shared library path loads, transitively, to libs.
func libraries(path string, libs map[string]bool) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		interp := string(data[:max(0, len(data)-1)]) // NUL-terminated
		libs[interp] = true
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	for _, name := range needed {
		lib, err := findLibrary(name)
		if err != nil {
			return err
		}
		if libs[lib] {
			continue
		}
		libs[lib] = true
		if err := libraries(lib, libs); err != nil {
			return fmt.Errorf("%s: %w", lib, err)
		}
	}
	return nil
}

func findLibrary(name string) (string, error) {
	if filepath.Base(name) != name {
		return "", fmt.Errorf("library %q: a path, not a name", name)
	}
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("shared library %s not found in %v", name, libDirs)
}

// copyFile copies the content of src (links followed) to dst, creating its directory.
func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
