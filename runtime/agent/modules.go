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

	"golang.org/x/sys/unix"
)

var moduleNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

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
		if !moduleNamePattern.MatchString(line) {
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
