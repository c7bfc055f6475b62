// Package hostroot lets kata-deploy, running in a container, act on the host whose root
// directory is mounted into it (`docker run --privileged --pid=host -v /:/host ...`).
//
// Rather than prefixing every path the installer touches (daemon.json, the prefix, the lock, the
// dockerd and QEMU binaries, /proc, /dev/kvm, containerd's configuration, systemctl, ...) and
// rewriting back every path it writes into the host's configuration, kata-deploy copies what it
// brings from the image into the host, then changes its root directory to the host's (chroot).
// From then on the kernel resolves every path, symbolic links included, inside the host's root,
// so no link on the host leads outside it, and every path the installer sees or records is the
// host's own view. With --pid=host, /proc there shows the host's processes, so the dockerd that
// serves the socket is found and signalled as on the host itself.
//
// The copies are written through file descriptors of directories opened with
// github.com/cyphar/filepath-securejoin, so a symbolic link under the mounted root cannot
// redirect them outside it before the chroot either.
package hostroot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// EnvVar names the default of --host-root: the installer image sets it to /host.
const EnvVar = "KATA_DEPLOY_HOST_ROOT"

// StagePrefix starts the name of the directory, under the host's /run, that holds what is
// copied from the image for one command (removed when it ends).
const StagePrefix = "kata-deploy-image-"

// Root is the host's root directory as mounted where kata-deploy runs.
type Root struct {
	Dir string
}

// Open checks dir: an existing directory, absolute and clean. A Root of "" or "/" is not a
// host root (kata-deploy runs on the host itself): ok is false.
func Open(dir string) (r Root, ok bool, err error) {
	if dir == "" || dir == "/" {
		return Root{}, false, nil
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return Root{}, false, fmt.Errorf("--host-root %q must be a clean absolute path (the host's / mounted here, e.g. -v /:/host)", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return Root{}, false, fmt.Errorf("--host-root %s: %w; mount the host's root there (docker run -v /:/host)", dir, err)
	}
	if !fi.IsDir() {
		return Root{}, false, fmt.Errorf("--host-root %s is not a directory", dir)
	}
	return Root{Dir: dir}, true, nil
}

// Staging is a directory of the host's /run holding files copied from the image.
type Staging struct {
	run  *os.File // the host's /run
	dir  *os.File
	name string // the directory's name under /run
}

// NewStaging makes a new private directory under the host's /run.
func (r Root) NewStaging() (*Staging, error) {
	run, err := r.mkdirAll("run")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			run.Close()
		}
	}()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := StagePrefix + hex.EncodeToString(b[:])
	if err := unix.Mkdirat(int(run.Fd()), name, 0o700); err != nil {
		return nil, fmt.Errorf("making %s under the host's /run: %w", name, err)
	}
	fd, err := unix.Openat(int(run.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s under the host's /run: %w", name, err)
	}
	ok = true
	return &Staging{run: run, dir: os.NewFile(uintptr(fd), name), name: name}, nil
}

// HostDir is the staging directory as the host sees it.
func (s *Staging) HostDir() string { return "/run/" + s.name }

// Copy copies the file src (a path where kata-deploy runs) into the staging directory under
// its own name, keeping its permission bits, and returns the copy's path as the host sees it.
func (s *Staging) Copy(src string) (string, error) {
	name := filepath.Base(src)
	if err := copyAt(s.dir, src, name); err != nil {
		return "", err
	}
	return s.HostDir() + "/" + name, nil
}

// Remove removes the staging directory and its files, through the descriptors opened when it
// was made: inside the host root or not yet, no link is followed.
func (s *Staging) Remove() error {
	defer s.run.Close()
	defer s.dir.Close()
	names, err := s.dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("removing %s: %w", s.HostDir(), err)
	}
	for _, n := range names {
		if err := unix.Unlinkat(int(s.dir.Fd()), n, 0); err != nil {
			return fmt.Errorf("removing %s/%s: %w", s.HostDir(), n, err)
		}
	}
	if err := unix.Unlinkat(int(s.run.Fd()), s.name, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("removing %s: %w", s.HostDir(), err)
	}
	return nil
}

// CopyInto copies the file src (a path where kata-deploy runs) into hostDir (a directory of the
// host, created when missing, e.g. the kernel cache) under its own name, atomically, and returns
// the copy's path as the host sees it. The copy is kept: it is what later commands on the host
// (upgrade without --kernel) find recorded.
func (r Root) CopyInto(src, hostDir string) (string, error) {
	if !filepath.IsAbs(hostDir) {
		return "", fmt.Errorf("%s: want an absolute directory of the host", hostDir)
	}
	dir, err := r.mkdirAll(strings.TrimPrefix(filepath.Clean(hostDir), "/"))
	if err != nil {
		return "", err
	}
	defer dir.Close()
	name := filepath.Base(src)
	tmp := "." + name + ".tmp"
	_ = unix.Unlinkat(int(dir.Fd()), tmp, 0) // what a killed copy left
	if err := copyAt(dir, src, tmp); err != nil {
		return "", err
	}
	if err := unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), name); err != nil {
		_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return "", fmt.Errorf("putting %s into the host's %s: %w", name, hostDir, err)
	}
	return filepath.Join(hostDir, name), nil
}

// Enter makes the host's root this process's root directory (every thread's: Go's threads
// share it) and its working directory. Paths resolve as on the host from then on.
func (r Root) Enter() error {
	if err := unix.Chroot(r.Dir); err != nil {
		return fmt.Errorf("entering the host root %s: %w; run the container with --privileged", r.Dir, err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("entering the host root %s: %w", r.Dir, err)
	}
	return nil
}

// mkdirAll opens the directory rel (relative to the host's root), creating what is missing,
// without following any symbolic link out of the root.
func (r Root) mkdirAll(rel string) (*os.File, error) {
	root, err := os.Open(r.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	d, err := pathrs.MkdirAllHandle(root, rel, 0o755)
	if err != nil {
		return nil, fmt.Errorf("making the host's /%s under %s: %w", rel, r.Dir, err)
	}
	return d, nil
}

// copyAt copies src to name in dir, created exclusively (never through a link), with src's
// permission bits.
func copyAt(dir *os.File, src, name string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(fi.Mode().Perm()))
	if err != nil {
		return fmt.Errorf("copying %s into the host: %w", src, err)
	}
	out := os.NewFile(uintptr(fd), name)
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = unix.Unlinkat(int(dir.Fd()), name, 0)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copying %s into the host: %w", src, err)
	}
	if err := unix.Fchmod(fd, uint32(fi.Mode().Perm())); err != nil { // the umask narrowed it
		return err
	}
	return out.Sync()
}

// ErrNoKernel is returned by ImageKernel when the image carries no kernel package.
var ErrNoKernel = errors.New("no kernel package")

// ImageKernel is the one linux-image-*.deb in dir (the image carries its guest kernel package
// next to its binaries).
func ImageKernel(dir string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "linux-image-*.deb"))
	if err != nil {
		return "", err
	}
	switch len(m) {
	case 0:
		return "", fmt.Errorf("%w in %s: pass --kernel", ErrNoKernel, dir)
	case 1:
		return m[0], nil
	}
	return "", fmt.Errorf("%d kernel packages in %s: pass --kernel to choose", len(m), dir)
}
