package directvolume

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReadUpstreamLayout(t *testing.T) {
	root := t.TempDir()
	must(t, Write(root, "/var/lib/v/mnt", MountInfo{VolumeType: "block", Device: "/var/lib/v/disk.img", FSType: "ext4"}))
	raw, err := os.ReadFile(filepath.Join(root, base64.URLEncoding.EncodeToString([]byte("/var/lib/v/mnt")), "mountInfo.json"))
	must(t, err)
	if want := `{"volume-type":"block","device":"/var/lib/v/disk.img","fstype":"ext4","metadata":{},"options":[]}`; string(raw) != want {
		t.Fatalf("record = %s, want %s", raw, want)
	}
	if _, err := Read(root, "/other"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of no record: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		m    MountInfo
		ok   bool
	}{
		{"ok", MountInfo{VolumeType: "block", Device: "/a/disk.img", FSType: "xfs"}, true},
		{"directvol", MountInfo{VolumeType: "directvol", Device: "/a", FSType: "ext4"}, false},
		{"relative", MountInfo{VolumeType: "block", Device: "a/disk.img", FSType: "ext4"}, false},
		{"comma", MountInfo{VolumeType: "block", Device: "/a,b", FSType: "ext4"}, false},
		{"unclean", MountInfo{VolumeType: "block", Device: "/a/../b", FSType: "ext4"}, false},
		{"fstype", MountInfo{VolumeType: "block", Device: "/a", FSType: "ext4,ro"}, false},
	}
	for _, tt := range tests {
		if err := tt.m.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}

func TestClaims(t *testing.T) {
	root := t.TempDir()
	must(t, Write(root, "/v", MountInfo{VolumeType: "block", Device: "/d", FSType: "ext4"}))
	alive := map[string]bool{"a": true}
	isAlive := func(id string) bool { return alive[id] }
	must(t, Claim(root, "/v", "a", isAlive))
	must(t, Claim(root, "/v", "a", isAlive))
	if err := Claim(root, "/v", "b", isAlive); err == nil || !strings.Contains(err.Error(), "one VM at a time") {
		t.Fatalf("second VM claimed: %v", err)
	}
	alive["a"] = false
	must(t, Claim(root, "/v", "b", isAlive))
	ids, err := Claims(root, "/v")
	must(t, err)
	if len(ids) != 1 || ids[0] != "b" {
		t.Fatalf("claims = %v", ids)
	}
	if err := Claim(root, "/v", "../x", isAlive); err == nil {
		t.Fatal("a path as sandbox id was accepted")
	}
	must(t, Release(root, "/v", "b"))
	must(t, Release(root, "/v", "b"))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A bind mount whose source path is too long to have a record is no direct volume, not an error.
func TestReadLongPathIsNoRecord(t *testing.T) {
	long := "/" + strings.Repeat("d", 250)
	if _, err := Read(t.TempDir(), long); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a %d-byte path: %v, want fs.ErrNotExist", len(long), err)
	}
}
