package hypervisor

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/kata-containers/govmm/qemu"
)

// Block is a raw image file or a host block device given to the guest as a virtio-blk disk
// from boot on: the direct-assigned volumes, mounted by the agent, with no shared file system
// between, and the devices of docker run --device.
type Block struct {
	// ID names the drive and is its virtio serial, by which the guest finds the disk
	// (/sys/block/vd*/serial): at most 20 characters, the virtio-blk limit.
	ID       string
	Path     string // absolute path of a regular file, or of a block device when Device is set
	ReadOnly bool
	Device   bool
}

var blockIDPattern = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

func (b Block) validate() error {
	if !blockIDPattern.MatchString(b.ID) {
		return fmt.Errorf("block device id %q is invalid: use 1 to 20 lower-case letters and digits", b.ID)
	}
	if err := optionString("block device image", b.Path); err != nil {
		return err
	}
	fi, err := os.Lstat(b.Path)
	if err != nil {
		return fmt.Errorf("block device image: %w", err)
	}
	switch {
	case b.Device && fi.Mode()&fs.ModeDevice == 0 || b.Device && fi.Mode()&fs.ModeCharDevice != 0:
		return fmt.Errorf("block device %s is not a block device", b.Path)
	case !b.Device && !fi.Mode().IsRegular():
		return fmt.Errorf("block device image %s is not a regular file", b.Path)
	}
	return nil
}

func validateBlocks(blocks []Block) []error {
	var errs []error
	seen := map[string]bool{}
	for _, b := range blocks {
		if err := b.validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[b.ID] || seen[b.Path] {
			errs = append(errs, fmt.Errorf("block device %s (%s) is given twice", b.ID, b.Path))
		}
		seen[b.ID], seen[b.Path] = true, true
	}
	return errs
}

// blockDevice is a virtio-blk disk on a raw file, as -blockdev (JSON: no escaping of the path)
// and -device. govmm's BlockDevice emits the legacy -drive with a bare "readonly", which QEMU
// deprecates, and splices the path into a comma-separated option string.
type blockDevice struct{ b Block }

type blockdevFile struct {
	Driver   string `json:"driver"`
	Filename string `json:"filename"`
	ReadOnly bool   `json:"read-only"`
	// locking: QEMU holds OFD locks on the image, so a second QEMU cannot open it for writing.
	Locking string `json:"locking"`
}

type blockdevRaw struct {
	Driver   string       `json:"driver"`
	NodeName string       `json:"node-name"`
	ReadOnly bool         `json:"read-only"`
	File     blockdevFile `json:"file"`
}

func (d blockDevice) Valid() bool { return d.b.validate() == nil }

func (d blockDevice) QemuParams(*qemu.Config) []string {
	file := blockdevFile{Driver: "file", Filename: d.b.Path, ReadOnly: d.b.ReadOnly, Locking: "on"}
	if d.b.Device {
		file.Driver = "host_device"
	}
	node, _ := json.Marshal(blockdevRaw{Driver: "raw", NodeName: d.b.ID, ReadOnly: d.b.ReadOnly, File: file})
	return []string{
		"-blockdev", string(node),
		"-device", "virtio-blk-pci,drive=" + d.b.ID + ",serial=" + d.b.ID + ",id=dev-" + d.b.ID,
	}
}

func blockDevices(blocks []Block) []qemu.Device {
	devs := make([]qemu.Device, 0, len(blocks))
	for _, b := range blocks {
		devs = append(devs, blockDevice{b})
	}
	return devs
}
