package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
)

func TestFindAndAttachDirectVolumes(t *testing.T) {
	dir := t.TempDir()
	root, stateRoot := filepath.Join(dir, "dv"), filepath.Join(dir, "state")
	for _, d := range []string{filepath.Join(stateRoot, "other"), filepath.Join(dir, "mnt")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	vol := filepath.Join(dir, "mnt")
	if err := directvolume.Write(root, vol, directvolume.MountInfo{VolumeType: "block", Device: "/img/disk.img", FSType: "xfs"}); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/plain", Type: "bind", Source: dir, Options: []string{"rbind"}},
		{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
	}}
	vols, err := findDirectVolumes(root, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].index != 2 || !vols[0].block.ReadOnly || vols[0].block.Path != "/img/disk.img" ||
		vols[0].share.FSType != "xfs" || !vols[0].share.ReadOnly || vols[0].share.Tag != vols[0].block.ID {
		t.Fatalf("direct volumes = %+v", vols)
	}
	if got := guestSources(vols); got[2] != "/run/kata-deploy/blocks/kblk0" || len(got) != 1 {
		t.Fatalf("guest sources = %v", got)
	}
	// A running sandbox ("other" has a state directory) holds the volume: refused.
	if err := directvolume.Claim(root, vol, "other", func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := attachDirectVolumes(root, stateRoot, "mine", vols); err == nil || !strings.Contains(err.Error(), "one VM at a time") {
		t.Fatalf("second VM attached: %v", err)
	}
	// Once it is gone, its claim is stale.
	if err := os.Remove(filepath.Join(stateRoot, "other")); err != nil {
		t.Fatal(err)
	}
	d, err := attachDirectVolumes(root, stateRoot, "mine", vols)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := directvolume.Claims(root, vol); len(ids) != 1 || ids[0] != "mine" {
		t.Fatalf("claims = %v", ids)
	}
	if err := d.release(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := directvolume.Claims(root, vol); len(ids) != 0 {
		t.Fatalf("claims after release = %v", ids)
	}
}
