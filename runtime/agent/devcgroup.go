package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// devicesCgroup is the guest's cgroup v1 devices hierarchy. It is mounted,
// opened and detached at once: the agent reaches it only through fd, and no
// path in any mount namespace leads to it, so a container process (even one
// that escapes its chroot into the agent's namespace) finds no cgroupfs to
// move itself out of its cgroup or to rewrite its rules.
type devicesCgroup struct {
	fd int
}

// cgroupName tells whether a container id may name its cgroup.
var cgroupName = agentproto.IsID

func openDevicesCgroup() (*devicesCgroup, error) {
	dir, err := os.MkdirTemp("/run", "devices-cgroup-")
	if err != nil {
		return nil, fmt.Errorf("devices cgroup: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "devices"); err != nil {
		return nil, fmt.Errorf("mount the devices cgroup controller (is CONFIG_CGROUP_DEVICE in the guest kernel?): %w", err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	uerr := unix.Unmount(dir, unix.MNT_DETACH)
	if err != nil {
		return nil, fmt.Errorf("open the devices cgroup: %w", err)
	}
	if uerr != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("detach the devices cgroup: %w", uerr)
	}
	return &devicesCgroup{fd: fd}, nil
}

func (d *devicesCgroup) write(name, file, line string) error {
	fd, err := unix.Openat(d.fd, name+"/"+file, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open the devices cgroup's %s: %w", file, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(line)); err != nil {
		return fmt.Errorf("write %q to the devices cgroup's %s: %w", line, file, err)
	}
	return nil
}

// create makes the container's cgroup with its rules and moves pid (the
// container's first process, still waiting for its config) into it.
func (d *devicesCgroup) create(name string, writes []containerinit.DeviceWrite, pid int) error {
	if !cgroupName(name) {
		return fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	if err := unix.Mkdirat(d.fd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create the container's devices cgroup: %w", err)
	}
	for _, w := range writes {
		if err := d.write(name, w.File, w.Line); err != nil {
			return err
		}
	}
	return d.join(name, pid)
}

// join moves pid into the container's cgroup; its children follow.
func (d *devicesCgroup) join(name string, pid int) error {
	return d.write(name, "cgroup.procs", strconv.Itoa(pid))
}

// remove deletes an empty container cgroup.
func (d *devicesCgroup) remove(name string) error {
	return unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
}
