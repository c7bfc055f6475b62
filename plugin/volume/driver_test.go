package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
)

// fakeDisk records mounts in memory; Check fails for images listed in corrupt.
type fakeDisk struct {
	mounted map[string]bool
	corrupt map[string]bool
}

func (f *fakeDisk) Create(_ context.Context, path string, size int64, fs string) error {
	return os.WriteFile(path, []byte(fs), 0o600)
}
func (f *fakeDisk) Check(_ context.Context, path, fs string) error {
	if f.corrupt[path] {
		return errors.New("bad superblock")
	}
	return nil
}
func (f *fakeDisk) Mount(_ context.Context, path, fs, dir string) error {
	f.mounted[dir] = true
	return nil
}
func (f *fakeDisk) Unmount(dir string) error         { delete(f.mounted, dir); return nil }
func (f *fakeDisk) Mounted(dir string) (bool, error) { return f.mounted[dir], nil }

func newTestDriver(t *testing.T, dir string, disk *fakeDisk, boot string) *Driver {
	t.Helper()
	d, err := New(Config{StateDir: filepath.Join(dir, "state"), DirectVolumeRoot: filepath.Join(dir, "dv"), BootID: boot, Disk: disk, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCreateOptions(t *testing.T) {
	tests := []struct {
		name    string
		vol     string
		opts    map[string]string
		wantErr string
	}{
		{"defaults", "v1", nil, ""},
		{"size and fs", "v2", map[string]string{"size": "10G", "fs": "xfs"}, ""},
		{"bad name", "../x", nil, "not a valid volume name"},
		{"one char", "a", nil, "not a valid volume name"},
		{"bad size", "v3", map[string]string{"size": "lots"}, "size \"lots\""},
		{"too small", "v4", map[string]string{"size": "1M"}, "out of range"},
		{"xfs too small", "v5", map[string]string{"size": "100M", "fs": "xfs"}, "out of range"},
		{"bad fs", "v6", map[string]string{"fs": "btrfs"}, "not supported"},
		{"unknown", "v7", map[string]string{"color": "red"}, "unknown option"},
	}
	d := newTestDriver(t, t.TempDir(), &fakeDisk{mounted: map[string]bool{}}, "b1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Create(&volume.CreateRequest{Name: tt.vol, Options: tt.opts})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Create(%q, %v) = %v, want error containing %q", tt.vol, tt.opts, err, tt.wantErr)
			}
		})
	}
}

func TestConflictingOptions(t *testing.T) {
	d := newTestDriver(t, t.TempDir(), &fakeDisk{mounted: map[string]bool{}}, "b1")
	must(t, d.Create(&volume.CreateRequest{Name: "vol", Options: map[string]string{"size": "1G"}}))
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	must(t, d.Create(&volume.CreateRequest{Name: "vol", Options: map[string]string{"size": "1024M"}}))
	if err := d.Create(&volume.CreateRequest{Name: "vol", Options: map[string]string{"size": "2G"}}); err == nil || !strings.Contains(err.Error(), "other options") {
		t.Fatalf("a different size was accepted: %v", err)
	}
}

func TestMountExclusiveAndPersisted(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{mounted: map[string]bool{}}
	d := newTestDriver(t, dir, disk, "b1")
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	resp, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"})
	must(t, err)
	if !disk.mounted[resp.Mountpoint] {
		t.Fatal("not mounted on the host")
	}
	if mi, err := directvolume.Read(filepath.Join(dir, "dv"), resp.Mountpoint); err != nil || mi.Device != d.image("vol") || mi.FSType != "ext4" {
		t.Fatalf("direct volume record = %+v, %v", mi, err)
	}
	if _, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"}); err != nil {
		t.Fatalf("the same mount ID again: %v", err)
	}
	if _, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m2"}); err == nil || !strings.Contains(err.Error(), "one container at a time") {
		t.Fatalf("a second mount was accepted: %v", err)
	}
	if err := d.Remove(&volume.RemoveRequest{Name: "vol"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("rm of a volume in use: %v", err)
	}
	// A restart (same boot) keeps the mount; another boot forgets it.
	d = newTestDriver(t, dir, disk, "b1")
	if got := d.st.Volumes["vol"].Mounts; len(got) != 1 || got[0] != "m1" {
		t.Fatalf("mounts after restart = %v", got)
	}
	must(t, d.Unmount(&volume.UnmountRequest{Name: "vol", ID: "m1"}))
	if disk.mounted[resp.Mountpoint] {
		t.Fatal("still mounted after the last unmount")
	}
	if _, err := directvolume.Read(filepath.Join(dir, "dv"), resp.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record left after the last unmount: %v", err)
	}
	must(t, d.Remove(&volume.RemoveRequest{Name: "vol"}))
	if _, err := os.Stat(filepath.Join(dir, "state", "vol")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("volume directory left: %v", err)
	}
}

func TestRebootForgetsMounts(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{mounted: map[string]bool{}}
	d := newTestDriver(t, dir, disk, "b1")
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	_, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"})
	must(t, err)
	d = newTestDriver(t, dir, disk, "b2")
	if got := d.st.Volumes["vol"].Mounts; len(got) != 0 {
		t.Fatalf("mounts of another boot kept: %v", got)
	}
}

func TestCorruptRefused(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{mounted: map[string]bool{}, corrupt: map[string]bool{}}
	d := newTestDriver(t, dir, disk, "b1")
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	disk.corrupt[d.image("vol")] = true
	if _, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"}); err == nil || !strings.Contains(err.Error(), "failed a read-only check") {
		t.Fatalf("a corrupt image was mounted: %v", err)
	}
	if len(disk.mounted) != 0 || len(d.st.Volumes["vol"].Mounts) != 0 {
		t.Fatal("a refused mount left state behind")
	}
}

func TestVMClaimRefusesMount(t *testing.T) {
	dir := t.TempDir()
	d := newTestDriver(t, dir, &fakeDisk{mounted: map[string]bool{}}, "b1")
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	root := filepath.Join(dir, "dv")
	must(t, directvolume.Write(root, d.Mountpoint("vol"), directvolume.MountInfo{VolumeType: "block", Device: d.image("vol"), FSType: "ext4"}))
	must(t, directvolume.Claim(root, d.Mountpoint("vol"), "sandbox1", func(string) bool { return true }))
	if _, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"}); err == nil || !strings.Contains(err.Error(), "sandbox1") {
		t.Fatalf("mount while a VM holds the volume: %v", err)
	}
	got, err := d.Get(&volume.GetRequest{Name: "vol"})
	must(t, err)
	if a := got.Volume.Status["attachment"]; a != "vm sandbox1" {
		t.Fatalf("attachment = %v", a)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A managed plugin's state directory is elsewhere on the host: the records, and the claims a VM
// makes there, name the host's paths, while Docker is given the plugin's own.
func TestHostStateDir(t *testing.T) {
	dir := t.TempDir()
	disk := &fakeDisk{mounted: map[string]bool{}}
	host := "/var/lib/docker/plugins/0123/propagated-mount"
	root := filepath.Join(dir, "dv")
	d, err := New(Config{StateDir: filepath.Join(dir, "state"), HostStateDir: host, DirectVolumeRoot: root, BootID: "b1", Disk: disk, Logf: t.Logf})
	must(t, err)
	must(t, d.Create(&volume.CreateRequest{Name: "vol"}))
	resp, err := d.Mount(&volume.MountRequest{Name: "vol", ID: "m1"})
	must(t, err)
	if resp.Mountpoint != d.Mountpoint("vol") || !disk.mounted[resp.Mountpoint] {
		t.Fatalf("mount point %s (mounted %v), want the plugin's %s", resp.Mountpoint, disk.mounted, d.Mountpoint("vol"))
	}
	if _, err := directvolume.Read(root, resp.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a record under the plugin's path: %v", err)
	}
	mi, err := directvolume.Read(root, host+"/vol/mnt")
	if err != nil || mi.Device != host+"/vol/disk.img" {
		t.Fatalf("record of the host's mount point = %+v, %v; want device %s/vol/disk.img", mi, err, host)
	}
	must(t, directvolume.Claim(root, host+"/vol/mnt", "sandbox1", func(string) bool { return true }))
	if got, _ := d.Get(&volume.GetRequest{Name: "vol"}); got.Volume.Status["attachment"] != "vm sandbox1" {
		t.Errorf("attachment = %v, want the VM's claim on the host's path", got.Volume.Status["attachment"])
	}
	for _, bad := range []string{"relative/dir", "/a/../b", "/a,b"} {
		if _, err := New(Config{StateDir: filepath.Join(dir, "state"), HostStateDir: bad, DirectVolumeRoot: root, BootID: "b1", Disk: disk}); err == nil {
			t.Errorf("host state directory %q accepted", bad)
		}
	}
}
