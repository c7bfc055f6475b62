package hostinfo

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// KernelRelease is `uname -r`.
func KernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// CgroupVersion tells cgroup v2 (a cgroup2 filesystem at mountpoint, normally /sys/fs/cgroup) from
// v1. A tmpfs there is v1, including the "hybrid" layout with a cgroup2 tree under unified/:
// Docker and runc treat hybrid hosts as v1.
func CgroupVersion(mountpoint string) (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(mountpoint, &st); err != nil {
		return 0, fmt.Errorf("cannot tell the cgroup version: statfs %s: %w", mountpoint, err)
	}
	switch int64(st.Type) {
	case unix.CGROUP2_SUPER_MAGIC:
		return 2, nil
	case unix.TMPFS_MAGIC, unix.CGROUP_SUPER_MAGIC:
		return 1, nil
	}
	return 0, fmt.Errorf("%s is not a cgroup mount (filesystem magic %#x): mount cgroupfs there", mountpoint, st.Type)
}

// IsRoot reports whether this process runs with effective UID 0.
func IsRoot() bool { return os.Geteuid() == 0 }
