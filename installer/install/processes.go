package install

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
)

// installDirs are the directories whose binaries are the install's: the prefix (every version
// is under it) and an extracted upstream release.
func installDirs(m *manifest.Manifest) []string {
	dirs := []string{m.Prefix}
	if m.Upstream != nil && m.Upstream.Dir != "" {
		dirs = append(dirs, m.Upstream.Dir)
	}
	return dirs
}

// runningFrom lists the processes whose executable is under one of dirs: the shims of live VM
// containers (the shim re-executes itself from its real path, so a shim started through
// <prefix>/current still shows its version's directory).
func runningFrom(procRoot string, dirs []string) []dockerapi.Container {
	var out []dockerapi.Container
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(filepath.Join(procRoot, e.Name(), "exe"))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if !under(exe, dirs) {
			continue
		}
		out = append(out, dockerapi.Container{ID: "pid " + e.Name(), Name: filepath.Base(exe), Image: "-"})
	}
	return out
}
