package hypervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// rootSpec is the file system a confined process sees instead of the
// host's: a read-only tmpfs holding only the paths it must open, each
// bound at its own host path.
type rootSpec struct {
	// dir is an empty directory of the caller's to build the root on;
	// the tmpfs lives only in the process's mount namespace.
	dir string
	// readOnly are bound read-only (files or directories, recursively).
	readOnly []string
	// readWrite are directories bound read-write, recursively.
	readWrite []string
	// devices are device nodes bound into /dev when they exist.
	devices []string
}

// systemPaths are what any dynamically linked program needs: the
// programs and libraries (/usr, the merged-/usr links or directories
// beside it) and the dynamic loader's cache.
var systemPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc/ld.so.cache"}

// qemuDevices are the device nodes QEMU opens by path.
var qemuDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/kvm"}

// qemuRoot is what QEMU must open: its binary, the guest's kernel, initrd
// and firmware, the VM's state directory (sockets, console log) and the
// shares. Nothing else of the host is in its mount namespace.
func qemuRoot(c *Config, l layout) *rootSpec {
	r := &rootSpec{dir: l.root, devices: qemuDevices}
	r.readOnly = append(r.readOnly, systemPaths...)
	for _, p := range []string{c.QEMUPath, c.Kernel, c.Initrd, c.Firmware} {
		if p != "" {
			r.readOnly = append(r.readOnly, p)
		}
	}
	r.readWrite = append(r.readWrite, l.dir)
	if c.memory != nil {
		// Read-write even for a clone's private mapping: QEMU 7.2 opens a memory-backend-file
		// O_RDWR unless it also maps it read-only, which the guest's RAM cannot be.
		r.readWrite = append(r.readWrite, c.memory.path)
	}
	for _, b := range c.Blocks {
		if b.ReadOnly {
			r.readOnly = append(r.readOnly, b.Path)
		} else {
			r.readWrite = append(r.readWrite, b.Path)
		}
	}
	for _, s := range c.Shares {
		if s.Type == Share9P {
			r.readWrite = append(r.readWrite, s.HostPath)
		}
	}
	return r
}

// enterRoot builds r in the calling thread's mount namespace (which must be
// its own) and makes it the thread's root directory.
func enterRoot(r *rootSpec) error {
	if err := unix.Mount("tmpfs", r.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mount the root tmpfs: %w", err)
	}
	var bound []string
	bind := func(p string, readOnly bool) error {
		if covered(p, bound) {
			return nil
		}
		bound = append(bound, p)
		return bindInto(r.dir, p, readOnly)
	}
	for _, p := range r.readOnly {
		if err := bind(p, true); err != nil {
			return err
		}
	}
	for _, p := range r.readWrite {
		if err := bind(p, false); err != nil {
			return err
		}
	}
	for _, d := range r.devices {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		if err := bind(d, false); err != nil {
			return err
		}
	}
	if err := mountProc(filepath.Join(r.dir, "proc")); err != nil {
		return err
	}
	return pivotInto(r.dir)
}

// mountProc gives the process a /proc of its own: QEMU's 9p server
// changes modes through /proc/self/fd. Read-only, process directories
// only (no /proc/sys, no sysrq-trigger), and only those of processes it
// could ptrace, which is none of the host's: the host's /proc/<pid>/root
// and the like stay out of reach. Kernels before 5.8 lack subset=pid;
// there the rest is visible, read-only.
func mountProc(dir string) error {
	if err := os.Mkdir(dir, 0o555); err != nil {
		return err
	}
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	err := unix.Mount("proc", dir, "proc", flags, "subset=pid,hidepid=invisible")
	if err != nil {
		err = unix.Mount("proc", dir, "proc", flags, "hidepid=2")
	}
	if err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// bindInto binds host path p to the same path under root. A host path
// that is a symbolic link (merged /usr: /lib -> usr/lib) becomes the same
// link; one that does not exist is skipped for the system paths.
func bindInto(root, p string, readOnly bool) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) && isSystemPath(p) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	dst := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 && isSystemPath(p) {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	}
	if fi.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("mount point for %s: %w", p, err)
	}
	recursive := uintptr(unix.MS_REC)
	if strings.HasPrefix(root, p+"/") {
		// The VM's state directory holds the root's own mount
		// point: a recursive bind would show the root inside itself.
		recursive = 0
	}
	if err := unix.Mount(p, dst, "", unix.MS_BIND|recursive, ""); err != nil {
		return fmt.Errorf("bind %s: %w", p, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if fi.Mode()&fs.ModeDevice == 0 {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s (read-only %v, nosuid): %w", p, readOnly, err)
	}
	return nil
}

// covered reports whether p is one of the bound paths or below one.
func covered(p string, bound []string) bool {
	for _, b := range bound {
		if p == b || strings.HasPrefix(p, b+"/") {
			return true
		}
	}
	return false
}

func isSystemPath(p string) bool {
	for _, s := range systemPaths {
		if p == s {
			return true
		}
	}
	return false
}

// pivotInto makes root the root directory, drops the host's tree from the
// namespace, and makes the tmpfs read-only.
func pivotInto(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", root, err)
	}
	// The old root is stacked on the new one: detach it.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the root read-only: %w", err)
	}
	return nil
}
