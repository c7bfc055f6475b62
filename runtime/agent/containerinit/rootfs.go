package containerinit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupRootfs builds the container's filesystem view in the (new, private)
// mount namespace and makes it the root.
func setupRootfs(spec *specs.Spec, cg cgroupView, w *warnings) error {
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		p, ok := propagationFlag(spec.Linux.RootfsPropagation)
		if !ok {
			return fmt.Errorf("rootfsPropagation %q is not a propagation mode", spec.Linux.RootfsPropagation)
		}
		prop = p
	}
	// Keep the container's mounts from leaking into the agent's namespace.
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("set the propagation of / in the container's mount namespace: %w", err)
	}
	root := filepath.Clean(spec.Root.Path)
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind the rootfs %s onto itself (is its share mounted?): %w", root, err)
	}
	devTmpfs := false
	for _, m := range withDefaultDev(spec.Mounts) {
		mounted, err := mountOne(root, m, cg, w)
		if err != nil {
			return err
		}
		if mounted && path.Clean(m.Destination) == "/dev" && !isBind(m) {
			devTmpfs = true
		}
	}
	if devTmpfs {
		var devices []specs.LinuxDevice
		if spec.Linux != nil {
			devices = spec.Linux.Devices
		}
		if err := populateDev(root, devices); err != nil {
			return err
		}
	}
	if err := enterRoot(root); err != nil {
		return err
	}
	// Docker's WORKDIR may not exist in the image; create it before the
	// rootfs can become read-only (as runc does).
	if cwd := spec.Process.Cwd; cwd != "" {
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return fmt.Errorf("create the working directory %q: %w", cwd, err)
		}
	}
	if spec.Linux != nil {
		if err := setSysctls(spec.Linux.Sysctl); err != nil {
			return err
		}
		for _, p := range spec.Linux.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return err
			}
		}
		for _, p := range spec.Linux.MaskedPaths {
			if err := maskPath(p); err != nil {
				return err
			}
		}
	}
	if spec.Root.Readonly {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make the rootfs read-only: %w", err)
		}
	}
	return nil
}

// withDefaultDev gives a spec without a /dev mount the /dev and /dev/pts
// that runc users take for granted, rather than exposing (and writing
// device nodes into) the image's own /dev on the host.
func withDefaultDev(mounts []specs.Mount) []specs.Mount {
	hasDev, hasPts := false, false
	for _, m := range mounts {
		switch path.Clean(m.Destination) {
		case "/dev":
			hasDev = true
		case "/dev/pts":
			hasPts = true
		}
	}
	if hasDev {
		return mounts
	}
	defaults := []specs.Mount{{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}}}
	if !hasPts {
		defaults = append(defaults, specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}})
	}
	return append(defaults, mounts...)
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// mountOne mounts m under root; false means it was skipped on purpose.
func mountOne(root string, m specs.Mount, cg cgroupView, w *warnings) (bool, error) {
	if !path.IsAbs(m.Destination) {
		return false, fmt.Errorf("mount destination %q must be absolute", m.Destination)
	}
	opts := parseMountOptions(m.Options)
	if len(opts.ignored) > 0 {
		w.add("mount %s: ignored options %v", m.Destination, opts.ignored)
	}
	target, err := secureJoin(root, m.Destination)
	if err != nil {
		return false, err
	}
	if isCgroupMount(m) {
		return true, cg.mount(target, m.Destination, opts)
	}
	if isBind(m) {
		return true, bindMount(m.Source, target, m.Destination, opts)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return false, fmt.Errorf("create mount point %s: %w", m.Destination, err)
	}
	data := opts.data
	if m.Type == "devpts" {
		// A private pty instance per container, usable by every user.
		data = withDataOption(withDataOption(data, "newinstance", ""), "ptmxmode", "0666")
	}
	if err := unix.Mount(m.Source, target, m.Type, opts.flags, data); err != nil {
		return false, fmt.Errorf("mount %s (%s) at %s with %q: %w", m.Source, m.Type, m.Destination, data, err)
	}
	return true, propagate(target, m.Destination, opts.propagation)
}

func bindMount(source, target, dest string, opts mountOptions) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("bind mount source for %s: %w (the host path must be under a share, rewritten to its guest path)", dest, err)
	}
	if err := ensureMountPoint(target, fi.IsDir()); err != nil {
		return fmt.Errorf("create mount point %s: %w", dest, err)
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND|(opts.flags&unix.MS_REC), ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", source, dest, err)
	}
	// Flags such as ro only take effect through a remount of the bind.
	if extra := opts.flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); extra != 0 {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|extra, ""); err != nil {
			return fmt.Errorf("remount the bind at %s with flags %#x: %w", dest, extra, err)
		}
	}
	if err := applyRecursive(target, dest, opts.recursive); err != nil {
		return err
	}
	return propagate(target, dest, opts.propagation)
}

// ensureMountPoint creates a directory, or an empty file to bind a file on. One that exists
// already (Docker's init layer makes /etc/hostname, /etc/hosts and /etc/resolv.conf) is checked
// with a single lookup: on a 9p rootfs each lookup, creation and close is a round trip to QEMU.
// A file is bound on any non-directory but a link, as runc does, and never opened: the image
// decides what is there, and opening a FIFO or a device node could block or act.
func ensureMountPoint(target string, dir bool) error {
	if fi, err := os.Lstat(target); err == nil && dir == fi.IsDir() && fi.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if dir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func propagate(target, dest string, flags []uintptr) error {
	for _, p := range flags {
		if err := unix.Mount("", target, "", p, ""); err != nil {
			return fmt.Errorf("set propagation %#x on %s: %w", p, dest, err)
		}
	}
	return nil
}

// populateDev fills a fresh /dev with the standard nodes, bound from the
// guest's devtmpfs, the usual symlinks and the spec's devices.
func populateDev(root string, devices []specs.LinuxDevice) error {
	dev := filepath.Join(root, "dev")
	standard := []string{"null", "zero", "full", "random", "urandom", "tty"}
	for _, name := range standard {
		if err := bindDevice("/dev/"+name, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	for _, d := range devices {
		p := path.Clean(d.Path)
		name := strings.TrimPrefix(p, "/dev/")
		// The standard nodes are bound above; /dev/ptmx stays the link to this devpts
		// instance's ptmx, as runc makes it.
		if !strings.HasPrefix(p, "/dev/") || contains(standard, name) || isLinkName(links, name) {
			continue
		}
		target, err := secureJoin(root, p)
		if err != nil {
			return err
		}
		if err := makeDevice(target, d); err != nil {
			return err
		}
	}
	return nil
}

// makeDevice creates the node of a spec device, as runc does outside a user namespace. The shim
// passes only what the guest kernel has under the same numbers (its virtual character devices)
// and host disks the agent has renumbered to the guest's.
func makeDevice(target string, d specs.LinuxDevice) error {
	var kind uint32
	switch d.Type {
	case "b":
		kind = unix.S_IFBLK
	case "c", "u":
		kind = unix.S_IFCHR
	default:
		return fmt.Errorf("device %s: type %q is not supported", d.Path, d.Type)
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode & 0o777)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("create the directory of %s: %w", d.Path, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", d.Path, err)
	}
	dev := int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
	if err := unix.Mknod(target, kind|mode, dev); err != nil {
		return fmt.Errorf("create device %s: %w", d.Path, err)
	}
	// mknod applies the umask: set the mode the spec asks for.
	if err := unix.Chmod(target, mode); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	uid, gid := -1, -1
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Lchown(target, uid, gid); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	return nil
}

func isLinkName(links [][2]string, name string) bool {
	for _, l := range links {
		if l[1] == name {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func bindDevice(source, target string) error {
	if err := ensureMountPoint(target, false); err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind device %s: %w", source, err)
	}
	return nil
}

// enterRoot makes root the process's root directory. pivot_root is refused
// when the current root is the initramfs (the agent's), so then the rootfs
// is moved over "/" and chrooted into, after everything else of the agent's
// mount tree has been detached from this namespace.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("enter the rootfs %s: %w", root, err)
	}
	err := unix.PivotRoot(".", ".")
	if err == nil {
		// The old root is stacked under the new one: detach it.
		if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make the old root a slave: %w", err)
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the old root: %w", err)
		}
		return unix.Chdir("/")
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := detachOutside(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the rootfs %s to /: %w", root, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the rootfs: %w", err)
	}
	return unix.Chdir("/")
}

// detachOutside lazily unmounts every mount that is neither an ancestor of
// root nor inside it, deepest first.
func detachOutside(root string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	for _, mp := range mountsToDetach(parseMountPoints(data), root) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach %s: %w", mp, err)
		}
	}
	return nil
}

// parseMountPoints returns the mount points (5th field) of mountinfo.
func parseMountPoints(data []byte) []string {
	var mps []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mps = append(mps, unescapeMountinfo(f[4]))
	}
	return mps
}

var octalEscape = regexp.MustCompile(`\\[0-7]{3}`)

func unescapeMountinfo(s string) string {
	return octalEscape.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.ParseUint(m[1:], 8, 8)
		return string([]byte{byte(n)})
	})
}

// mountsToDetach picks, deepest first, the mount points unrelated to root.
func mountsToDetach(mountPoints []string, root string) []string {
	var out []string
	seen := map[string]bool{}
	for _, mp := range mountPoints {
		if mp == "/" || seen[mp] || within(root, mp) || within(mp, root) {
			continue
		}
		seen[mp] = true
		out = append(out, mp)
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if di != dj {
			return di > dj
		}
		return out[i] < out[j]
	})
	return out
}

// within reports whether p is dir or below it.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

var sysctlKey = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

func setSysctls(sysctls map[string]string) error {
	keys := make([]string, 0, len(sysctls))
	for k := range sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !sysctlKey.MatchString(k) {
			return fmt.Errorf("sysctl %q is not a valid key", k)
		}
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if err := os.WriteFile(p, []byte(sysctls[k]), 0); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", k, sysctls[k], err)
		}
	}
	return nil
}

func readonlyPath(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind read-only path %s: %w", p, err)
	}
	if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", p, err)
	}
	return nil
}

func maskPath(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0k")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}
