package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// directVolume is a bind mount of the spec whose source has an upstream Kata direct-volume
// record: its image reaches the guest as a virtio-blk disk, not through the shared file system.
type directVolume struct {
	index  int    // in spec.Mounts
	source string // the host path Docker gave (the volume's mount point)
	block  hypervisor.Block
	share  agentproto.Share
}

// directVolumes is what a sandbox attached, for release at teardown.
type directVolumes struct {
	root    string
	sandbox string
	vols    []directVolume
}

// findDirectVolumes returns the spec's bind mounts that are direct-assigned volumes.
func findDirectVolumes(root string, spec *specs.Spec) ([]directVolume, error) {
	var out []directVolume
	for i, m := range spec.Mounts {
		if !isBind(m) {
			continue
		}
		info, err := directvolume.Read(root, m.Source)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mount %s -> %s: %w", m.Source, m.Destination, err)
		}
		id := "kblk" + strconv.Itoa(len(out))
		ro := bindModeOf(m).readonly
		out = append(out, directVolume{
			index: i, source: m.Source,
			block: hypervisor.Block{ID: id, Path: info.Device, ReadOnly: ro},
			share: agentproto.Share{Type: agentproto.ShareBlock, Tag: id, GuestPath: path.Join(agentproto.BlockGuestDir, id), FSType: info.FSType, ReadOnly: ro},
		})
	}
	return out, nil
}

// attachDirectVolumes claims each direct volume for this sandbox (refused while another running
// VM holds it) and takes its host mount away: the volume plugin loop-mounts the image on the host
// for runc, and a file system must not be mounted by the host and the guest at once.
func attachDirectVolumes(root, stateRoot, sandboxID string, vols []directVolume) (_ *directVolumes, err error) {
	d := &directVolumes{root: root, sandbox: sandboxID}
	defer func() {
		if err != nil {
			d.release()
		}
	}()
	alive := func(id string) bool {
		_, err := os.Stat(filepath.Join(stateRoot, filepath.Base(id)))
		return err == nil
	}
	for _, v := range vols {
		if err := directvolume.Claim(root, v.source, sandboxID, alive); err != nil {
			return nil, err
		}
		d.vols = append(d.vols, v)
		if err := unmountHost(v.source); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// unmountHost unmounts what is mounted at the volume's mount point, if anything.
func unmountHost(dir string) error {
	mounted, err := mountinfo.Mounted(dir)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW); err != nil {
		return fmt.Errorf("the volume at %s is mounted on the host and cannot be unmounted (%w): is another container using it?", dir, err)
	}
	return nil
}

// guestSources maps the index of each direct volume's mount to its source in the guest.
func guestSources(vols []directVolume) map[int]string {
	m := make(map[int]string, len(vols))
	for _, v := range vols {
		m[v.index] = v.share.GuestPath
	}
	return m
}

func (d *directVolumes) blocks() []hypervisor.Block {
	var out []hypervisor.Block
	for _, v := range d.vols {
		out = append(out, v.block)
	}
	return out
}

func (d *directVolumes) shares() []agentproto.Share {
	var out []agentproto.Share
	for _, v := range d.vols {
		out = append(out, v.share)
	}
	return out
}

// release drops this sandbox's claims; safe on nil and more than once.
func (d *directVolumes) release() error {
	if d == nil {
		return nil
	}
	var errs []error
	for _, v := range d.vols {
		errs = append(errs, directvolume.Release(d.root, v.source, d.sandbox))
	}
	d.vols = nil
	return errors.Join(errs...)
}
