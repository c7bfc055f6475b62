package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultLockPath serialises every install and uninstall on the host: they all edit the one
// daemon.json of the one dockerd, whatever their prefix.
const DefaultLockPath = "/run/kata-deploy.lock"

// Lock is an exclusive flock held by this process; the kernel drops it when the process dies,
// however it dies, so a killed installer never leaves a stale lock.
type Lock struct{ f *os.File }

// Acquire takes the lock at path without waiting. When another process holds it, the error
// names that process (its pid is written into the lock file by its holder).
func Acquire(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of the lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the lock %s: %w (run as root)", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another kata-deploy install or uninstall is running%s (lock %s): wait for it to finish", holder, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Who holds it, for the message above; the content has no other meaning.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. The file stays: removing it could let a third process lock a file
// that no longer has a name while a second locks a new one.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

func readHolder(f *os.File) string {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}
