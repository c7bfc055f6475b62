package containerinit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// recursiveAttrs are mount attributes applied to a mount and every mount below it with
// mount_setattr(2) (Linux 5.12): "rro" makes a bind mount read-only down to its submounts, where a
// remount with MS_RDONLY changes the top mount only.
type recursiveAttrs struct {
	set, clear uint64
}

func (r recursiveAttrs) empty() bool { return r.set == 0 && r.clear == 0 }

// recursiveOption translates one of runc's recursive mount options ("rro", "rnosuid", ...).
func recursiveOption(opt string, r *recursiveAttrs) bool {
	attrs := map[string]struct {
		attr  uint64
		clear bool
	}{
		"rro": {unix.MOUNT_ATTR_RDONLY, false}, "rrw": {unix.MOUNT_ATTR_RDONLY, true},
		"rnosuid": {unix.MOUNT_ATTR_NOSUID, false}, "rsuid": {unix.MOUNT_ATTR_NOSUID, true},
		"rnodev": {unix.MOUNT_ATTR_NODEV, false}, "rdev": {unix.MOUNT_ATTR_NODEV, true},
		"rnoexec": {unix.MOUNT_ATTR_NOEXEC, false}, "rexec": {unix.MOUNT_ATTR_NOEXEC, true},
		"rnosymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, false}, "rsymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, true},
	}
	a, ok := attrs[opt]
	if !ok {
		return false
	}
	if a.clear {
		r.set &^= a.attr
		r.clear |= a.attr
	} else {
		r.clear &^= a.attr
		r.set |= a.attr
	}
	return true
}

// applyRecursive sets the attributes on the mount at target and every mount below it.
func applyRecursive(target, dest string, r recursiveAttrs) error {
	if r.empty() {
		return nil
	}
	attr := &unix.MountAttr{Attr_set: r.set, Attr_clr: r.clear}
	if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("set recursive mount attributes on %s (mount_setattr needs Linux 5.12 in the guest): %w", dest, err)
	}
	return nil
}
