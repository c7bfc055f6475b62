package daemonjson

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
)

// maxFileSize bounds what ReadFile accepts; a daemon.json is a few KiB.
const maxFileSize = 16 << 20

// newFileMode is the mode of a daemon.json this package creates, as Docker's
// packages ship /etc/docker/daemon.json.
const newFileMode fs.FileMode = 0o644

// FileInfo describes the file ReadFile read, for WriteFileAtomic and Backup
// to reproduce.
type FileInfo struct {
	Path     string      // the path asked for
	Target   string      // where the content lives: Path with symlinks resolved
	Exists   bool        // false: the file was missing (Target == Path)
	Mode     fs.FileMode // permission bits
	UID, GID int
}

// ReadFile reads daemon.json. A missing file is not an error: it returns nil
// data and info.Exists == false. A symlink is followed (info.Target); writes
// then go to the target and the link stays.
func ReadFile(path string) ([]byte, FileInfo, error) {
	info := FileInfo{Path: path, Target: path}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, info, nil
	} else if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, info, fmt.Errorf("read %s: cannot resolve the symlink (%w); fix or remove the link", path, err)
	}
	f, err := os.Open(target)
	if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, info, fmt.Errorf("read %s: %s is not a regular file; Docker expects a JSON file there", path, target)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, info, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, info, fmt.Errorf("read %s: larger than %d bytes, which is not a daemon.json kata-deploy will edit", path, maxFileSize)
	}
	info.Target, info.Exists, info.Mode = target, true, st.Mode().Perm()
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(sys.Uid), int(sys.Gid)
	}
	return data, info, nil
}

// WriteFileAtomic replaces the file described by like (from ReadFile of the
// same path) with data: a temporary file in the same directory gets the
// original's mode and owner, is synced and renamed over the target, then the
// directory is synced. Readers see the old or the new file, never a mix; on
// failure the original is untouched and no temporary file is left. A file
// that did not exist is created with mode 0644, owned by the caller.
func WriteFileAtomic(path string, data []byte, like FileInfo) error {
	target, mode := path, newFileMode
	if like.Exists {
		target, mode = like.Target, like.Mode
	}
	dir := filepath.Dir(target)
	pf, err := renameio.NewPendingFile(target, renameio.WithTempDir(dir), renameio.WithStaticPermissions(mode))
	if err != nil {
		return fmt.Errorf("write %s: cannot create a temporary file in %s (%w); is the directory read-only, or are you not root?", path, dir, err)
	}
	defer pf.Cleanup() //nolint:errcheck // no-op after success; best effort after failure
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if like.Exists {
		if err := keepOwner(pf.File, like.UID, like.GID); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write %s: replacing the file failed (%w); the original is unchanged", path, err)
	}
	return syncDir(dir)
}

// keepOwner gives f the owner uid:gid unless it has it already.
func keepOwner(f *os.File, uid, gid int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == uid && int(sys.Gid) == gid {
		return nil
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("cannot keep the owner %d:%d (%w); run as root", uid, gid, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Backup copies the file at path (its symlink target) next to that target as
// <name>.kata-deploy-<UTC time>.bak with the original's mode and owner, so it
// is never readable by more users than the original. An existing backup is
// never overwritten: a second backup in the same second gets a -1, -2, ...
// suffix. A missing file has nothing to back up: ("", nil).
func Backup(path string, now time.Time) (string, error) {
	data, info, err := ReadFile(path)
	if err != nil || !info.Exists {
		return "", err
	}
	stamp := now.UTC().Format("20060102T150405Z")
	prefix := filepath.Join(filepath.Dir(info.Target), filepath.Base(info.Target)+".kata-deploy-"+stamp)
	for i := 0; i < 100; i++ {
		name := prefix + ".bak"
		if i > 0 {
			name = fmt.Sprintf("%s-%d.bak", prefix, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode&0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("back up %s: %w; is %s writable?", path, err, filepath.Dir(name))
		}
		if err := writeBackup(f, data, info); err != nil {
			os.Remove(name)
			return "", fmt.Errorf("back up %s to %s: %w", path, name, err)
		}
		return name, syncDir(filepath.Dir(name))
	}
	return "", fmt.Errorf("back up %s: 100 backups named %s* already exist; remove old ones", path, prefix)
}

// writeBackup fills and closes f; the mode is set after the owner so that the
// file is never more open than the original, even for a moment.
func writeBackup(f *os.File, data []byte, info FileInfo) error {
	_, err := f.Write(data)
	if err == nil {
		err = keepOwner(f, info.UID, info.GID)
	}
	if err == nil {
		err = f.Chmod(info.Mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
