// Package directvolume reads and writes the records of upstream Kata Containers' direct-assigned
// volumes: a mountInfo.json, in a directory named after the base64url of a volume's host path,
// that tells a VM runtime to attach a device to the guest instead of sharing the path through a
// shared file system. The volume plugin writes them; the runtime reads them. The format is
// upstream's, so upstream Kata takes the same path for these volumes.
package directvolume

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// Root is where upstream Kata looks for direct-assigned volumes.
const Root = "/run/kata-containers/shared/direct-volumes"

// VolumeTypeBlock is the volume type of a block device or a raw image file.
const VolumeTypeBlock = "block"

const mountInfoName = "mountInfo.json"

// maxMountInfo caps what is read: the record is a few hundred bytes.
const maxMountInfo = 64 << 10

// MountInfo is upstream's record of one volume.
type MountInfo struct {
	VolumeType string            `json:"volume-type"`
	Device     string            `json:"device"`
	FSType     string            `json:"fstype"`
	Metadata   map[string]string `json:"metadata"`
	Options    []string          `json:"options"`
}

// idPattern is what a sandbox ID may be: it becomes a file name.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// fsTypePattern keeps the file system type a plain name: it reaches mount(2) in the guest.
var fsTypePattern = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// Validate rejects a record the runtime cannot attach safely: only block volumes backed by an
// absolute, clean path without commas (QEMU's option separator) are accepted.
func (m *MountInfo) Validate() error {
	if m.VolumeType != VolumeTypeBlock {
		return fmt.Errorf("volume type %q is not supported: only %q", m.VolumeType, VolumeTypeBlock)
	}
	if !filepath.IsAbs(m.Device) || filepath.Clean(m.Device) != m.Device || strings.ContainsAny(m.Device, ",\n") {
		return fmt.Errorf("device %q must be an absolute, clean path without commas", m.Device)
	}
	if !fsTypePattern.MatchString(m.FSType) {
		return fmt.Errorf("file system type %q is invalid", m.FSType)
	}
	return nil
}

// Dir is the directory holding the record of the volume mounted at volumePath.
func Dir(root, volumePath string) string {
	return filepath.Join(root, base64.URLEncoding.EncodeToString([]byte(volumePath)))
}

// Write records m for volumePath, atomically: a reader sees the old record or the new one.
func Write(root, volumePath string, m MountInfo) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if m.Metadata == nil {
		m.Metadata = map[string]string{}
	}
	if m.Options == nil {
		m.Options = []string{}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	dir := Dir(root, volumePath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the direct volume directory: %w", err)
	}
	return renameio.WriteFile(filepath.Join(dir, mountInfoName), data, 0o600)
}

// Read returns the record of volumePath; an error wrapping fs.ErrNotExist means the path is no
// direct-assigned volume.
func Read(root, volumePath string) (*MountInfo, error) {
	if len(filepath.Base(Dir(root, volumePath))) > unix.NAME_MAX {
		// No record can exist for so long a path (Write would fail the same way): it is an
		// ordinary bind mount, not an error.
		return nil, fmt.Errorf("%s: %w", volumePath, fs.ErrNotExist)
	}
	f, err := os.Open(filepath.Join(Dir(root, volumePath), mountInfoName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var m MountInfo
	dec := json.NewDecoder(io.LimitReader(f, maxMountInfo))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("reading the direct volume record of %s: %w", volumePath, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("direct volume record of %s: %w", volumePath, err)
	}
	return &m, nil
}

// Remove deletes the record of volumePath and its claims. A missing record is fine.
func Remove(root, volumePath string) error {
	return os.RemoveAll(Dir(root, volumePath))
}

// Claims lists the sandbox IDs that recorded a use of volumePath (upstream's RecordSandboxID).
func Claims(root, volumePath string) ([]string, error) {
	entries, err := os.ReadDir(Dir(root, volumePath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if n := e.Name(); n != mountInfoName && !strings.HasPrefix(n, ".") && e.Type().IsRegular() {
			ids = append(ids, n)
		}
	}
	return ids, nil
}

// Claim records that sandboxID uses volumePath; it fails if another sandbox for which alive
// answers true holds a claim (claims of dead sandboxes are dropped). Two runtimes claiming at once
// are serialised by a lock on the volume's directory.
func Claim(root, volumePath, sandboxID string, alive func(id string) bool) error {
	if !idPattern.MatchString(sandboxID) {
		return fmt.Errorf("invalid sandbox id %q", sandboxID)
	}
	dir, err := os.Open(Dir(root, volumePath))
	if err != nil {
		return fmt.Errorf("opening the direct volume directory of %s: %w", volumePath, err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking the direct volume directory of %s: %w", volumePath, err)
	}
	return claim(root, volumePath, sandboxID, alive)
}

func claim(root, volumePath, sandboxID string, alive func(id string) bool) error {
	ids, err := Claims(root, volumePath)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id == sandboxID {
			continue
		}
		if alive(id) {
			return fmt.Errorf("the volume at %s is attached to the running VM %s: a block file system can be attached to one VM at a time", volumePath, id)
		}
		_ = os.Remove(filepath.Join(Dir(root, volumePath), id))
	}
	return os.WriteFile(filepath.Join(Dir(root, volumePath), sandboxID), nil, 0o600)
}

// Release drops sandboxID's claim on volumePath. A missing claim is fine.
func Release(root, volumePath, sandboxID string) error {
	if !idPattern.MatchString(sandboxID) {
		return fmt.Errorf("invalid sandbox id %q", sandboxID)
	}
	err := os.Remove(filepath.Join(Dir(root, volumePath), sandboxID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
