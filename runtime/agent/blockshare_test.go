package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindBlockBySerial(t *testing.T) {
	dir := t.TempDir()
	for name, serial := range map[string]string{"vda": "kblk0\n", "vdb": "kblk1", "sda": "kblk2"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "serial"), []byte(serial), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ serial, want string }{
		{"kblk0", "/dev/vda"},
		{"kblk1", "/dev/vdb"},
		{"kblk2", ""}, // not a virtio disk
		{"kblk", ""},
	}
	for _, tt := range tests {
		got, err := findBlockBySerial(dir, tt.serial)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("findBlockBySerial(%q) = %q, %v; want %q", tt.serial, got, err, tt.want)
		}
	}
}
