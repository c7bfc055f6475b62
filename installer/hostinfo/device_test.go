package hostinfo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestProbeDevice(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	writeFile(t, regular, "x")
	link := filepath.Join(dir, "null-link")
	symlink(t, "/dev/null", link)
	dangling := filepath.Join(dir, "dangling")
	symlink(t, filepath.Join(dir, "nothing"), dangling)
	tests := []struct {
		name string
		path string
		want Device
	}{
		{"char device", "/dev/null", Device{Path: "/dev/null", Present: true, CharDevice: true}},
		{"symlink to a char device", link, Device{Path: link, Present: true, CharDevice: true}},
		{"regular file", regular, Device{Path: regular, Present: true}},
		{"directory", dir, Device{Path: dir, Present: true}},
		{"missing", filepath.Join(dir, "missing"), Device{Path: filepath.Join(dir, "missing")}},
		{"dangling symlink", dangling, Device{Path: dangling}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProbeDevice(tt.path); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The runtime's devices on this host, checked against stat directly.
func TestProbeDeviceThisHost(t *testing.T) {
	for _, p := range []string{"/dev/net/tun", "/dev/vhost-net", "/dev/vhost-vsock", "/dev/kvm"} {
		d := ProbeDevice(p)
		fi, err := os.Stat(p)
		if d.Present != (err == nil) {
			t.Errorf("%s: Present = %v, stat error %v", p, d.Present, err)
		}
		if err == nil && d.CharDevice != (fi.Mode()&os.ModeCharDevice != 0) {
			t.Errorf("%s: CharDevice = %v, mode %v", p, d.CharDevice, fi.Mode())
		}
		t.Logf("%+v", d)
	}
}
