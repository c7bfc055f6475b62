package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// devNumber is a device's major and minor numbers.
type devNumber struct{ major, minor int64 }

// guestDiskNumber waits for the virtio disk whose serial is serial and returns its numbers.
func guestDiskNumber(ctx context.Context, serial string) (devNumber, error) {
	deadline := time.Now().Add(blockShareTimeout)
	for {
		dev, err := findBlockBySerial(sysBlock, serial)
		if err == nil {
			var st unix.Stat_t
			if err = unix.Stat(dev, &st); err == nil {
				if st.Mode&unix.S_IFMT != unix.S_IFBLK {
					return devNumber{}, fmt.Errorf("%s is not a block device", dev)
				}
				return devNumber{int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))}, nil
			}
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) || ctx.Err() != nil {
			return devNumber{}, fmt.Errorf("find the disk of device %q: %w", serial, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mapDevices rewrites the spec's host block devices with the numbers of the guest disks they
// became: the node created at the device's path and the device cgroup rules that name it. find
// returns the guest numbers of a disk by serial.
func mapDevices(spec *specs.Spec, devs []agentproto.Device, find func(serial string) (devNumber, error)) error {
	if len(devs) == 0 {
		return nil
	}
	if spec.Linux == nil {
		return errors.New("the spec has host devices but no linux section")
	}
	guest := make(map[devNumber]devNumber, len(devs))
	byPath := make(map[string]devNumber, len(devs))
	for _, d := range devs {
		n, err := find(d.Tag)
		if err != nil {
			return err
		}
		guest[devNumber{d.HostMajor, d.HostMinor}] = n
		byPath[d.ContainerPath] = n
	}
	// One pass over each list, each entry rewritten at most once: a host number can equal
	// another device's guest number.
	for i := range spec.Linux.Devices {
		dv := &spec.Linux.Devices[i]
		n, ok := byPath[dv.Path]
		if !ok || dv.Type != "b" {
			continue
		}
		dv.Major, dv.Minor = n.major, n.minor
		delete(byPath, dv.Path)
	}
	for p := range byPath {
		return fmt.Errorf("device %s is not among the spec's devices", p)
	}
	if spec.Linux.Resources == nil {
		return nil
	}
	for i := range spec.Linux.Resources.Devices {
		r := &spec.Linux.Resources.Devices[i]
		if r.Type != "b" || r.Major == nil || r.Minor == nil {
			continue
		}
		if n, ok := guest[devNumber{*r.Major, *r.Minor}]; ok {
			r.Major, r.Minor = &n.major, &n.minor
		}
	}
	return nil
}

// mapGuestDevices is mapDevices against the guest's disks.
func mapGuestDevices(ctx context.Context, spec *specs.Spec, devs []agentproto.Device) error {
	return mapDevices(spec, devs, func(serial string) (devNumber, error) { return guestDiskNumber(ctx, serial) })
}
