package volume

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
)

// Names in the state directory.
const (
	stateFile = "volumes.json"
	imageName = "disk.img"
	mountDir  = "mnt"
)

// Config configures a Driver.
type Config struct {
	// StateDir holds volumes.json and one directory per volume (disk.img, mnt/).
	StateDir string
	// DirectVolumeRoot is where the VM runtime finds direct-volume records (directvolume.Root).
	DirectVolumeRoot string
	// HostStateDir is where the host (Docker, the VM runtime) sees StateDir: the records name
	// mount points and images by the host's paths. Empty: StateDir itself (a plugin the host
	// runs); a managed plugin's state directory is its propagated mount, elsewhere on the host.
	HostStateDir string
	// BootID identifies the host's boot: mounts recorded in an earlier boot are gone.
	BootID string
	Disk   Disk
	Logf   func(format string, args ...any)
}

// Driver implements Docker's volume plugin protocol (volume.Driver).
type Driver struct {
	cfg Config
	mu  sync.Mutex
	st  *state
}

var _ volume.Driver = (*Driver)(nil)

// New loads the state and reconciles it with the host: volumes whose image is gone are dropped,
// mounts of an earlier boot are forgotten, the records of mounted volumes are rewritten.
func New(cfg Config) (*Driver, error) {
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if h := cfg.HostStateDir; h != "" && (!filepath.IsAbs(h) || filepath.Clean(h) != h || strings.ContainsAny(h, ",\n")) {
		return nil, fmt.Errorf("the state directory's host path %q must be absolute and clean, without commas", h)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	st, err := loadState(filepath.Join(cfg.StateDir, stateFile))
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, st: st}
	if err := d.reconcile(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Driver) reconcile() error {
	rebooted := d.st.BootID != d.cfg.BootID
	d.st.BootID = d.cfg.BootID
	for name, r := range d.st.Volumes {
		if checkName(name) != nil {
			delete(d.st.Volumes, name)
			continue
		}
		if _, err := os.Stat(d.image(name)); err != nil {
			d.cfg.Logf("volume %s: image %s is gone (%v): dropping the volume", name, d.image(name), err)
			delete(d.st.Volumes, name)
			continue
		}
		if rebooted {
			r.Mounts = nil
		}
		if len(r.Mounts) > 0 {
			if err := d.writeRecord(name, r); err != nil {
				return err
			}
		}
	}
	return d.save()
}

func (d *Driver) save() error { return d.st.save(filepath.Join(d.cfg.StateDir, stateFile)) }

func (d *Driver) image(name string) string { return filepath.Join(d.cfg.StateDir, name, imageName) }

// Mountpoint is the host directory Docker is given for volume name.
func (d *Driver) Mountpoint(name string) string {
	return filepath.Join(d.cfg.StateDir, name, mountDir)
}

// hostPath is where the host sees path name/file of the state directory.
func (d *Driver) hostPath(name, file string) string {
	dir := d.cfg.HostStateDir
	if dir == "" {
		dir = d.cfg.StateDir
	}
	return filepath.Join(dir, name, file)
}

// recordKey is the host's path of the volume's mount point: what Docker gives a container, and
// so what the VM runtime looks a record up by.
func (d *Driver) recordKey(name string) string { return d.hostPath(name, mountDir) }

func (d *Driver) writeRecord(name string, r *record) error {
	err := directvolume.Write(d.cfg.DirectVolumeRoot, d.recordKey(name), directvolume.MountInfo{
		VolumeType: directvolume.VolumeTypeBlock, Device: d.hostPath(name, imageName), FSType: r.FS,
	})
	if err != nil {
		return fmt.Errorf("writing the direct volume record of %s: %w", name, err)
	}
	return nil
}

func (d *Driver) lookup(name string) (*record, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	r, ok := d.st.Volumes[name]
	if !ok {
		return nil, fmt.Errorf("volume %s not found", name)
	}
	return r, nil
}

// Create makes the image and its file system. An existing volume is fine when the options agree.
func (d *Driver) Create(req *volume.CreateRequest) (err error) {
	if err := checkName(req.Name); err != nil {
		return err
	}
	spec, given, err := parseOptions(req.Options)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.st.Volumes[req.Name]; ok {
		if c := r.conflicts(spec, given); len(c) > 0 {
			return fmt.Errorf("volume %s already exists with other options: %s; remove it first or leave the options out", req.Name, joinConflicts(c))
		}
		return nil
	}
	dir := filepath.Join(d.cfg.StateDir, req.Name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating the volume directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(d.Mountpoint(req.Name), 0o755); err != nil {
		return err
	}
	if err := d.cfg.Disk.Create(context.Background(), d.image(req.Name), spec.Size, spec.FS); err != nil {
		return fmt.Errorf("creating the image of %s: %w", req.Name, err)
	}
	d.st.Volumes[req.Name] = &record{Spec: spec, CreatedAt: time.Now().UTC().Format(time.RFC3339)}
	if err := d.save(); err != nil {
		delete(d.st.Volumes, req.Name)
		return err
	}
	return nil
}

// Remove deletes a volume no container has mounted.
func (d *Driver) Remove(req *volume.RemoveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	if len(r.Mounts) > 0 {
		return fmt.Errorf("volume %s is in use (%d mount(s)): stop the container using it first", req.Name, len(r.Mounts))
	}
	if err := d.unmountHost(req.Name); err != nil {
		return err
	}
	if err := directvolume.Remove(d.cfg.DirectVolumeRoot, d.recordKey(req.Name)); err != nil {
		return err
	}
	delete(d.st.Volumes, req.Name)
	if err := d.save(); err != nil {
		d.st.Volumes[req.Name] = r
		return err
	}
	return os.RemoveAll(filepath.Join(d.cfg.StateDir, req.Name))
}

// Mount attaches the volume for one container. It writes the direct-volume record (a VM runtime
// then detaches the host mount and attaches the image itself) and loop-mounts the image on the
// host for a runc container, once a read-only check found the file system clean. A volume is
// attached to one container at a time: a block file system cannot be shared.
func (d *Driver) Mount(req *volume.MountRequest) (*volume.MountResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	mp := d.Mountpoint(req.Name)
	if slices.Contains(r.Mounts, req.ID) {
		return &volume.MountResponse{Mountpoint: mp}, nil
	}
	if len(r.Mounts) > 0 {
		return nil, fmt.Errorf("volume %s is already attached to another container (%s): a block file system can be used by one container at a time; stop that container first", req.Name, d.attachment(req.Name))
	}
	if claims, _ := directvolume.Claims(d.cfg.DirectVolumeRoot, d.recordKey(req.Name)); len(claims) > 0 {
		return nil, fmt.Errorf("volume %s is still attached to the VM %s: stop that container first", req.Name, strings.Join(claims, ", "))
	}
	if err := d.writeRecord(req.Name, r); err != nil {
		return nil, err
	}
	if err := d.mountHost(req.Name, r); err != nil {
		_ = directvolume.Remove(d.cfg.DirectVolumeRoot, d.recordKey(req.Name))
		return nil, err
	}
	r.addMount(req.ID)
	if err := d.save(); err != nil {
		r.removeMount(req.ID)
		return nil, err
	}
	return &volume.MountResponse{Mountpoint: mp}, nil
}

func (d *Driver) mountHost(name string, r *record) error {
	mp := d.Mountpoint(name)
	if mounted, err := d.cfg.Disk.Mounted(mp); err != nil || mounted {
		return err
	}
	ctx := context.Background()
	if err := d.cfg.Disk.Check(ctx, d.image(name), r.FS); err != nil {
		return fmt.Errorf("volume %s: its %s file system failed a read-only check, so it is not mounted on the host (a damaged file system is a risk to the host kernel); repair it with e2fsck/xfs_repair on %s: %w", name, r.FS, d.image(name), err)
	}
	if err := d.cfg.Disk.Mount(ctx, d.image(name), r.FS, mp); err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	return nil
}

func (d *Driver) unmountHost(name string) error {
	return d.cfg.Disk.Unmount(d.Mountpoint(name))
}

// Unmount ends one container's use; the last one unmounts the host mount and drops the record.
func (d *Driver) Unmount(req *volume.UnmountRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookup(req.Name)
	if err != nil {
		return err
	}
	if !r.removeMount(req.ID) {
		return nil
	}
	if len(r.Mounts) == 0 {
		if err := d.unmountHost(req.Name); err != nil {
			r.addMount(req.ID)
			return err
		}
		if err := directvolume.Remove(d.cfg.DirectVolumeRoot, d.recordKey(req.Name)); err != nil {
			d.cfg.Logf("volume %s: removing its direct volume record: %v", req.Name, err)
		}
	}
	return d.save()
}

// Path answers where the volume is mounted.
func (d *Driver) Path(req *volume.PathRequest) (*volume.PathResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.lookup(req.Name); err != nil {
		return nil, err
	}
	return &volume.PathResponse{Mountpoint: d.Mountpoint(req.Name)}, nil
}

// Get describes one volume, with its Status.
func (d *Driver) Get(req *volume.GetRequest) (*volume.GetResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.lookup(req.Name)
	if err != nil {
		return nil, err
	}
	return &volume.GetResponse{Volume: d.describe(req.Name, r)}, nil
}

// List describes every volume.
func (d *Driver) List() (*volume.ListResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*volume.Volume
	for _, name := range sortedNames(d.st.Volumes) {
		out = append(out, d.describe(name, d.st.Volumes[name]))
	}
	return &volume.ListResponse{Volumes: out}, nil
}

// Capabilities: the volumes live on this host.
func (d *Driver) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "local"}}
}

func (d *Driver) describe(name string, r *record) *volume.Volume {
	status := map[string]any{
		"size":       r.Size,
		"fs":         r.FS,
		"image":      d.image(name),
		"mounts":     len(r.Mounts),
		"attachment": d.attachment(name),
	}
	if used, err := allocated(d.image(name)); err == nil {
		status["usage"] = used
	}
	return &volume.Volume{Name: name, Mountpoint: d.Mountpoint(name), CreatedAt: r.CreatedAt, Status: status}
}

// attachment says who has the volume: a VM (by its sandbox ID), the host (loop mount), or none.
func (d *Driver) attachment(name string) string {
	if claims, _ := directvolume.Claims(d.cfg.DirectVolumeRoot, d.recordKey(name)); len(claims) > 0 {
		return "vm " + strings.Join(claims, ",")
	}
	if mounted, _ := d.cfg.Disk.Mounted(d.Mountpoint(name)); mounted {
		return "host"
	}
	return "none"
}

// allocated is the image's space on the host: the sparse file's written blocks.
func allocated(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no stat")
	}
	return st.Blocks * 512, nil
}

func sortedNames(m map[string]*record) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Names lists the volumes; for uninstall, which refuses while any remains.
func (d *Driver) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sortedNames(d.st.Volumes)
}
