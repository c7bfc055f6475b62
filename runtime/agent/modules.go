package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// moduleNamePattern with a length of at most 64 is a module name (see agentproto's idPattern for
// why the length is apart).
var moduleNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseModuleList returns the module names in data, skipping blank lines and
// '#' comments. Lines that are not plain module names are returned in bad:
// they must never become paths.
func ParseModuleList(data []byte) (names, bad []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) > 64 || !moduleNamePattern.MatchString(line) {
			bad = append(bad, line)
			continue
		}
		names = append(names, line)
	}
	return names, bad
}

// LoadModules loads dir/<name>.ko for each name in order with finit_module.
// An already loaded (or built-in) module is fine; a missing or failing one
// is logged and skipped: the agent may still work without it.
func LoadModules(dir string, names []string, log *Logger) (loaded int) {
	for _, name := range names {
		err := loadModule(filepath.Join(dir, name+".ko"))
		switch {
		case err == nil:
			loaded++
		case errors.Is(err, unix.EEXIST):
		default:
			log.Errorf("module %s: %v", name, err)
		}
	}
	return loaded
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module (is it in the initrd?): %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// ModuleGroups loads the guest image's optional kernel modules by group (agentproto.ModuleGroup*),
// each group at most once. Boot loads only the agent's channel to the host: a group is loaded
// when the first request needs it, or earlier, in the background, when the host named it on the
// kernel command line, so the loading overlaps the host's own work instead of delaying the
// agent's first answer. A group no container needs (disks, vsock) costs nothing. A nil
// *ModuleGroups loads nothing: every module is then loaded at boot, or built in.
type ModuleGroups struct {
	listDir, modDir string
	log             *Logger

	mu        sync.Mutex
	once      map[string]*sync.Once
	preloaded chan struct{} // closed when Preload's groups are loaded
}

// NewModuleGroups reads group lists from listDir/<group>.load and modules from modDir.
func NewModuleGroups(listDir, modDir string, log *Logger) *ModuleGroups {
	return &ModuleGroups{listDir: listDir, modDir: modDir, log: log, once: map[string]*sync.Once{}, preloaded: make(chan struct{})}
}

// Need returns once the group's modules are loaded (or failed to, which is logged: the request
// then fails with its own error, e.g. no such device). Concurrent callers wait for one load.
func (g *ModuleGroups) Need(group string) {
	if g == nil {
		return
	}
	if !agentproto.IsModuleGroup(group) {
		g.log.Errorf("%q is not a module group", group)
		return
	}
	g.mu.Lock()
	once := g.once[group]
	if once == nil {
		once = new(sync.Once)
		g.once[group] = once
	}
	g.mu.Unlock()
	once.Do(func() { g.load(group) })
}

func (g *ModuleGroups) load(group string) {
	list := filepath.Join(g.listDir, group+".load")
	data, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		return // an image without groups loads everything at boot
	}
	if err != nil {
		g.log.Errorf("read %s: %v", list, err)
		return
	}
	names, bad := ParseModuleList(data)
	for _, b := range bad {
		g.log.Errorf("%s: %q is not a module name, skipped", list, b)
	}
	start := time.Now()
	n := LoadModules(g.modDir, names, g.log)
	g.log.Debugf("module group %s: loaded %d of %d modules in %v", group, n, len(names), time.Since(start))
}

// Preload loads groups in the background, in order; Preloaded reports when they are.
func (g *ModuleGroups) Preload(groups []string) {
	go func() {
		defer close(g.preloaded)
		for _, group := range groups {
			g.Need(group)
		}
	}()
}

// Preloaded reports whether the groups given to Preload are loaded (true without a Preload).
func (g *ModuleGroups) Preloaded() bool {
	if g == nil {
		return true
	}
	select {
	case <-g.preloaded:
		return true
	default:
		return false
	}
}

// parseModuleGroups reads the value of agent.modules: known group names, comma separated.
func parseModuleGroups(value string) (groups, bad []string) {
	for _, name := range strings.Split(value, ",") {
		switch {
		case name == "":
		case agentproto.IsModuleGroup(name):
			groups = append(groups, name)
		default:
			bad = append(bad, name)
		}
	}
	return groups, bad
}
