package install

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
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
// <prefix>/current still shows its version's directory). The fillers of the pool of clones, the
// same binary, are not containers: they are left out (poolFillers lists them); the pool's
// waiting QEMUs run the host's QEMU and are never under dirs.
func runningFrom(procRoot string, dirs []string) []dockerapi.Container {
	var out []dockerapi.Container
	for _, p := range processesFrom(procRoot, dirs) {
		if !p.filler {
			out = append(out, dockerapi.Container{ID: "pid " + strconv.Itoa(p.pid), Name: filepath.Base(p.exe), Image: "-"})
		}
	}
	return out
}

// poolFillers lists the pids of the processes under dirs that fill the pool of clones.
func poolFillers(procRoot string, dirs []string) []int {
	var out []int
	for _, p := range processesFrom(procRoot, dirs) {
		if p.filler {
			out = append(out, p.pid)
		}
	}
	return out
}

type process struct {
	pid    int
	exe    string
	filler bool // a filler of the pool of clones (runtimecache.FillPoolEnv=1)
}

// processesFrom lists the processes whose executable is under one of dirs, in pid order.
func processesFrom(procRoot string, dirs []string) []process {
	var out []process
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
		out = append(out, process{pid: pid, exe: exe, filler: isPoolFiller(filepath.Join(procRoot, e.Name()))})
	}
	slices.SortFunc(out, func(a, b process) int { return a.pid - b.pid })
	return out
}

// isPoolFiller reports whether the process's environment marks it a filler of the pool. One that
// cannot be read counts as a shim: a container is never mistaken for a filler.
func isPoolFiller(procDir string) bool {
	env, err := os.ReadFile(filepath.Join(procDir, "environ"))
	if err != nil {
		return false
	}
	return slices.Contains(strings.Split(string(env), "\x00"), runtimecache.FillPoolEnv+"=1")
}
