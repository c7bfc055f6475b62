package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// The share root is a tmpfs of its own: whatever the guest writes into the root itself (as opposed
// to into a bind under it) stays within these bounds, and unmounting it discards it.
const (
	shareRootSize   = "1m"
	shareRootInodes = "4096"
)

// sharedDir is the host directory shared into the guest: the container's rootfs and every bind
// mount source are bind-mounted under it, so one virtio-9p/virtio-fs device carries them all, live
// (a bind mount shows Docker's later rewrites of /etc/hosts, not a copy).
//
// Everything under path is writable by the guest once QEMU runs. The names the shim created are
// therefore recorded in a file outside it (record), and teardown touches only those names.
type sharedDir struct {
	path   string
	record string
}

// share mounts a size-capped tmpfs at dir, bind-mounts spec's rootfs and bind mounts under it and
// returns a copy of the spec rewritten to guest paths. Read-only mounts are read-only on the host
// side too, and every bind is nosuid,nodev. The name of every bind is appended to record before it
// is made, so that a crash at any point leaves a complete list for cleanupShare. On error
// everything it mounted is undone.
func share(dir, record string, spec *specs.Spec) (_ *sharedDir, _ *specs.Spec, err error) {
	return shareExcept(dir, record, spec, nil)
}

// shareExcept is share, except that the bind mounts whose index is in direct are not shared: their
// sources become the given guest paths (direct-assigned disks, directvol.go).
func shareExcept(dir, record string, spec *specs.Spec, direct map[int]string) (_ *sharedDir, _ *specs.Spec, err error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, nil, errors.New("the OCI spec has no root.path: the container has no rootfs to share")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, fmt.Errorf("creating the shared directory: %w", err)
	}
	s := &sharedDir{path: dir, record: record}
	defer func() {
		if err != nil {
			s.unshare()
		}
	}()
	if err := mountShareRoot(dir); err != nil {
		return nil, nil, err
	}
	guest := *spec
	root := *spec.Root
	guest.Root = &root
	if root.Readonly {
		// The guest cannot create mount points in a rootfs that is read-only on the host.
		if err := makeMountPoints(spec); err != nil {
			return nil, nil, err
		}
	}
	if root.Path, err = s.bind(spec.Root.Path, "rootfs", bindMode{readonly: root.Readonly}); err != nil {
		return nil, nil, err
	}
	guest.Mounts = slices.Clone(spec.Mounts)
	for i, m := range guest.Mounts {
		if !isBind(m) {
			continue
		}
		if src, ok := direct[i]; ok {
			guest.Mounts[i].Source = src
			continue
		}
		name := "m" + strconv.Itoa(i)
		if guest.Mounts[i].Source, err = s.bind(m.Source, name, bindModeOf(m)); err != nil {
			return nil, nil, fmt.Errorf("sharing bind mount %s -> %s: %w", m.Source, m.Destination, err)
		}
	}
	return s, &guest, nil
}

// mountShareRoot mounts the share root's tmpfs: small, 0700, nosuid,nodev,noexec, private.
func mountShareRoot(dir string) error {
	data := "mode=0700,size=" + shareRootSize + ",nr_inodes=" + shareRootInodes
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("mounting the tmpfs of the shared directory %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		return fmt.Errorf("making the shared directory %s private: %w", dir, err)
	}
	return nil
}

// bindMode is how a bind mount is made on the host side.
type bindMode struct {
	recursive   bool // rbind: submounts come along
	readonly    bool // the bind itself is read-only ("ro")
	recursiveRO bool // every submount is read-only too ("rro")
	// receive: what the host mounts under the source later reaches the guest's view ("slave",
	// "shared" and their recursive forms). Propagation back to the host is impossible: the guest
	// mounts in its own kernel.
	receive bool
}

// bindModeOf reads a spec mount's options as runc does: the last of ro/rw wins.
func bindModeOf(m specs.Mount) bindMode {
	var b bindMode
	for _, o := range m.Options {
		switch o {
		case "rbind":
			b.recursive = true
		case "ro":
			b.readonly = true
		case "rw":
			b.readonly, b.recursiveRO = false, false
		case "rro":
			b.readonly, b.recursiveRO = true, true
		case "slave", "rslave", "shared", "rshared":
			b.receive = true
		case "private", "rprivate", "unbindable", "runbindable":
			b.receive = false
		}
	}
	return b
}

// bind mounts source at dir/name and returns the guest path of it.
func (s *sharedDir) bind(source, name string, mode bindMode) (string, error) {
	st, err := os.Stat(source)
	if err != nil {
		return "", err
	}
	if err := appendRecord(s.record, name); err != nil {
		return "", err
	}
	target := filepath.Join(s.path, name)
	if st.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return "", err
	}
	flags := uintptr(unix.MS_BIND)
	if mode.recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(source, target, "", flags, ""); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("bind-mounting %s: %w", source, err)
	}
	// Private: nothing mounted later under the source propagates into the guest's view, and our
	// mount does not propagate back to the host's other namespaces. A slave (asked for by the
	// spec's propagation) still receives the host's later mounts, as a runc container's would, and
	// sends nothing back.
	prop := uintptr(unix.MS_PRIVATE | unix.MS_REC)
	if mode.receive {
		prop = unix.MS_SLAVE | unix.MS_REC
	}
	_ = unix.Mount("", target, "", prop, "")
	if err := lockDown(target, mode); err != nil {
		return "", fmt.Errorf("restricting the bind of %s: %w", source, err)
	}
	return filepath.Join(agentproto.SharedGuestDir, name), nil
}

// lockDown makes the bind at target nosuid,nodev and, as mode asks, read-only, on the host: QEMU
// (or virtiofsd) itself then cannot write through it, whatever the guest does with its own mount.
// A bind remount replaces the mount's flags, so the ones the source mount has are kept (the kernel
// refuses to clear flags that are locked, e.g. in a user namespace).
func lockDown(target string, mode bindMode) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return err
	}
	flags := unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV | keptFlags(st.Flags)
	if mode.readonly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", uintptr(flags), ""); err != nil {
		return fmt.Errorf("remount %#x: %w", flags, err)
	}
	if !mode.recursive {
		return nil
	}
	// Submounts of an rbind: nosuid,nodev always, read-only for rro. mount_setattr changes only the
	// attributes named and needs no path below target.
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if mode.recursiveRO {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, attr); err != nil {
		return fmt.Errorf("mount_setattr on the submounts (Linux >= 5.12): %w", err)
	}
	return nil
}

// keptFlags maps the statfs flags of a mount to the mount(2) flags a bind remount must repeat to
// keep them.
func keptFlags(st int64) int {
	pairs := []struct{ st, ms int }{
		{unix.ST_RDONLY, unix.MS_RDONLY},
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	}
	flags := 0
	for _, p := range pairs {
		if st&int64(p.st) != 0 {
			flags |= p.ms
		}
	}
	if st&(unix.ST_NOATIME|unix.ST_RELATIME) == 0 {
		flags |= unix.MS_STRICTATIME
	}
	return flags
}

// appendRecord adds name to the list of names the shim created under the share.
func appendRecord(record, name string) error {
	f, err := os.OpenFile(record, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("recording the shared mount %s: %w", name, err)
	}
	_, err = f.WriteString(name + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording the shared mount %s: %w", name, err)
	}
	return nil
}

// unshare undoes every mount and removes the directory and the record. It is safe to call twice.
func (s *sharedDir) unshare() error {
	err := cleanupShare(s.path, s.record)
	return err
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}
