package hypervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Cleanup tears down what a VM left in stateDir when the process that
// started it is gone (the shim's "delete" after the shim itself died): it
// kills QEMU and virtiofsd if they still run (checking that each pid is
// still the process that was started, not a recycled one) and removes the
// directory. It is idempotent: a missing directory is not an error.
func Cleanup(stateDir string) error {
	if err := optionString("state directory", stateDir); err != nil {
		return err
	}
	if stateDir == "/" || filepath.Dir(stateDir) == "/" {
		return fmt.Errorf("refusing to clean up %q: not a per-VM state directory", stateDir)
	}
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean up %s: %w", stateDir, err)
	}
	if !looksLikeStateDir(entries) {
		return fmt.Errorf("refusing to clean up %s: it holds files but none a VM writes (qemu.log, console.log, qemu.pid, ...)", stateDir)
	}
	l := newLayout(stateDir)
	var errs []error
	// QEMU first: virtiofsd exits once QEMU has let go of it.
	if pid, err := readPidFile(l.pid); err == nil {
		errs = append(errs, killIfOurs(pid, mentions(l.dir), killTimeout))
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if !isVirtiofsdPidFile(e.Name()) {
			continue
		}
		pid, start, err := readIdentity(filepath.Join(stateDir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, killIfOurs(pid, startedAt(start), killTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up %s: %w", stateDir, err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("clean up %s: %w", stateDir, err)
	}
	return nil
}

func isVirtiofsdPidFile(name string) bool {
	return strings.HasPrefix(name, "vfs") && strings.HasSuffix(name, ".pid")
}

// looksLikeStateDir guards RemoveAll against a wrong path: an empty
// directory, or one holding at least one file Start creates, qualifies.
func looksLikeStateDir(entries []os.DirEntry) bool {
	if len(entries) == 0 {
		return true
	}
	for _, e := range entries {
		switch n := e.Name(); {
		case n == qemuLogName, n == consoleName, n == consoleSockName, n == pidFileName, n == qmpSocketName, n == agentSocketName,
			isVirtiofsdPidFile(n):
			return true
		}
	}
	return false
}
