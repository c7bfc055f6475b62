package hypervisor

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBlockDevice(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(img, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	blk, chr := filepath.Join(dir, "blk"), filepath.Join(dir, "chr")
	if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
		t.Skipf("cannot create a block device node (not root?): %v", err)
	}
	if err := unix.Mknod(chr, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    Block
		ok   bool
		args []string
	}{
		{"read-write", Block{ID: "kblk0", Path: img}, true, []string{
			"-blockdev", `{"driver":"raw","node-name":"kblk0","read-only":false,"file":{"driver":"file","filename":"` + img + `","read-only":false,"locking":"on"}}`,
			"-device", "virtio-blk-pci,drive=kblk0,serial=kblk0,id=dev-kblk0"}},
		{"read-only", Block{ID: "kblk1", Path: img, ReadOnly: true}, true, []string{
			"-blockdev", `{"driver":"raw","node-name":"kblk1","read-only":true,"file":{"driver":"file","filename":"` + img + `","read-only":true,"locking":"on"}}`,
			"-device", "virtio-blk-pci,drive=kblk1,serial=kblk1,id=dev-kblk1"}},
		{"host device", Block{ID: "kdev0", Path: blk, Device: true}, true, []string{
			"-blockdev", `{"driver":"raw","node-name":"kdev0","read-only":false,"file":{"driver":"host_device","filename":"` + blk + `","read-only":false,"locking":"on"}}`,
			"-device", "virtio-blk-pci,drive=kdev0,serial=kdev0,id=dev-kdev0"}},
		{"device that is a file", Block{ID: "kdev0", Path: img, Device: true}, false, nil},
		{"device that is a char device", Block{ID: "kdev0", Path: chr, Device: true}, false, nil},
		{"image that is a device", Block{ID: "kblk0", Path: blk}, false, nil},
		{"symlink", Block{ID: "kblk0", Path: filepath.Join(dir, "link")}, false, nil},
		{"comma", Block{ID: "kblk0", Path: img + ",x"}, false, nil},
		{"long id", Block{ID: "kblk0123456789abcdefgh", Path: img}, false, nil},
		{"id option", Block{ID: "a,b", Path: img}, false, nil},
		{"missing", Block{ID: "kblk0", Path: filepath.Join(dir, "none")}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := blockDevice{tt.b}
			if d.Valid() != tt.ok {
				t.Fatalf("Valid() = %v, want %v (%v)", !tt.ok, tt.ok, tt.b.validate())
			}
			if tt.ok && !slices.Equal(d.QemuParams(nil), tt.args) {
				t.Fatalf("args = %q\nwant %q", d.QemuParams(nil), tt.args)
			}
		})
	}
	if errs := validateBlocks([]Block{{ID: "kblk0", Path: img}, {ID: "kblk1", Path: img}}); len(errs) == 0 {
		t.Fatal("the same image twice was accepted")
	}
}
