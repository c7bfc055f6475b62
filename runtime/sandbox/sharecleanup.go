package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// sharedName is a name the shim gives a bind under the share root; a record naming anything else
// was not written by the shim and is ignored.
var sharedName = regexp.MustCompile(`^(rootfs|m[0-9]{1,5})$`)

// maxUnmounts bounds how many mounts stacked on one mount point cleanup removes.
const maxUnmounts = 16

// cleanupShare undoes a share made by share, whether the shim is tearing down its own sandbox or
// cleaning up after a dead shim. The guest could write anything under dir, so it trusts none of
// it: it unmounts only the names listed in record (kept outside the share), only when mountinfo
// says they are mount points, with UMOUNT_NOFOLLOW, then detaches the share root's tmpfs (and with
// it anything left under it), and finally removes what remains without following symlinks or
// entering other mounts. Idempotent.
func cleanupShare(dir, record string) error {
	// The state directory is ours, but the configured path may go through a symlink (/var/run):
	// mountinfo lists real paths.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if errors.Is(err, os.ErrNotExist) {
		return removeRecord(record)
	}
	names, err := readRecord(record)
	if err != nil {
		return err
	}
	if names == nil {
		// No record: a share made before records were kept. Only a name the shim gives binds
		// that mountinfo lists as a mount point qualifies (the guest cannot mount on the host).
		names = legacyNames(dir)
	}
	var errs []error
	for _, name := range slices.Backward(names) {
		if err := unmountAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeTree(dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeRecord(record); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// readRecord returns the valid, distinct names in record, in order; a missing record is empty.
func readRecord(record string) ([]string, error) {
	data, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the list of shared mounts: %w", err)
	}
	var names []string
	for _, n := range strings.Split(string(data), "\n") {
		if sharedName.MatchString(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// legacyNames lists the entries of dir named as the shim names binds that are mount points.
func legacyNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if sharedName.MatchString(e.Name()) {
			if n, err := mountCount(filepath.Join(dir, e.Name())); err == nil && n > 0 {
				names = append(names, e.Name())
			}
		}
	}
	return names
}

func removeRecord(record string) error {
	if err := os.Remove(record); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// unmountAll detaches every mount stacked on p, as long as mountinfo lists p as a mount point.
// The last component is never followed: a symlink the guest put there is not a mount point (it is
// not in mountinfo) and, should it become one in between, UMOUNT_NOFOLLOW still does not follow it.
func unmountAll(p string) error {
	for range maxUnmounts {
		n, err := mountCount(p)
		if err != nil || n == 0 {
			return err
		}
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	return fmt.Errorf("unmounting %s: still a mount point after %d unmounts", p, maxUnmounts)
}

// mountCount returns how many mounts /proc/self/mountinfo lists at exactly p.
func mountCount(p string) (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == p {
			n++
		}
	}
	return n, sc.Err()
}

// unescapeMountinfo decodes the \ooo escapes mountinfo uses for space, tab, newline and backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeTree removes dir and everything under it that is on dir's own filesystem, working
// relative to directory file descriptors: no symlink is followed (symlinks, fifos, sockets and
// devices are unlinked, never opened) and a directory on another filesystem (a mount still in
// place) is left alone and reported, so that nothing is ever deleted through a mount.
func removeTree(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	err = emptyDir(fd, st.Dev, dir)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// emptyDir removes every entry of the directory open at fd; dev is the filesystem it may remove
// from, where names what fd is, for errors. It takes ownership of nothing: the caller closes fd.
func emptyDir(fd int, dev uint64, where string) error {
	var errs []error
	for {
		names, err := readNames(fd)
		if err != nil {
			return fmt.Errorf("reading %s: %w", where, err)
		}
		progress := false
		for _, name := range names {
			err := unix.Unlinkat(fd, name, 0)
			if err == nil || errors.Is(err, unix.ENOENT) {
				progress = true
				continue
			}
			if !errors.Is(err, unix.EISDIR) {
				errs = append(errs, fmt.Errorf("removing %s: %w", path.Join(where, name), err))
				continue
			}
			if err := removeSubdir(fd, name, dev, path.Join(where, name)); err != nil {
				errs = append(errs, err)
				continue
			}
			progress = true
		}
		if len(errs) > 0 || !progress || len(names) == 0 {
			return errors.Join(errs...)
		}
	}
}

func removeSubdir(parent int, name string, dev uint64, where string) error {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", where, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("removing %s: %w", where, err)
	}
	if st.Dev != dev {
		unix.Close(fd)
		return fmt.Errorf("not removing %s: it is another filesystem (a mount still in place)", where)
	}
	err = emptyDir(fd, dev, where)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", where, err)
	}
	return nil
}

// readNames lists the directory open at fd from its start.
func readNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// removeShallow removes dir and its direct entries with os.Remove, never recursively: should a bind
// mount still be in place, the removal fails (EBUSY, ENOTEMPTY) instead of deleting the user's data
// through it.
func removeShallow(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// makeMountPoints creates, in a rootfs that is about to be shared read-only, the mount points and
// working directory the guest will need (it cannot create them itself through a read-only share),
// as runc does before it remounts a rootfs read-only. The rootfs may hold what an earlier run of
// the guest left: every path is resolved inside it (openat2 RESOLVE_IN_ROOT), never following a
// symlink out of it. Best effort: what cannot be created here is reported by the guest when it
// mounts.
func makeMountPoints(spec *specs.Spec) error {
	root, err := unix.Open(spec.Root.Path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the rootfs: %w", err)
	}
	defer unix.Close(root)
	if spec.Process != nil && spec.Process.Cwd != "" {
		mkdirInRoot(root, spec.Process.Cwd, "")
	}
	for i, m := range spec.Mounts {
		dest := path.Clean("/" + m.Destination)
		if dest == "/" || underEarlierMount(spec.Mounts[:i], dest) {
			continue // the guest makes it in the mount above it (/dev/pts in /dev's tmpfs)
		}
		if fi, err := os.Stat(m.Source); err != nil || !isBind(m) || fi.IsDir() {
			mkdirInRoot(root, dest, "")
		} else {
			mkdirInRoot(root, path.Dir(dest), path.Base(dest))
		}
	}
	return nil
}

// underEarlierMount reports whether dest lies inside the destination of one of mounts.
func underEarlierMount(mounts []specs.Mount, dest string) bool {
	for _, m := range mounts {
		if d := path.Clean("/" + m.Destination); d != "/" && strings.HasPrefix(dest, d+"/") {
			return true
		}
	}
	return false
}

// mkdirInRoot creates the directory p (and its parents) inside the directory open at root and,
// when file is not empty, an empty file of that name in it.
func mkdirInRoot(root int, p, file string) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	dir, err := unix.Openat2(root, ".", how)
	if err != nil {
		return
	}
	prefix := ""
	for _, c := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if c == "" {
			continue
		}
		prefix += "/" + c
		next, err := unix.Openat2(root, prefix, how)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(dir, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(dir)
				return
			}
			next, err = unix.Openat2(root, prefix, how)
		}
		unix.Close(dir)
		if err != nil {
			return
		}
		dir = next
	}
	if file != "" {
		if fd, err := unix.Openat(dir, file, unix.O_CREAT|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644); err == nil {
			unix.Close(fd)
		}
	}
	unix.Close(dir)
}
