package volume

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// TestHostDiskCheck runs the real tools on real images: clean, with a journal to replay, and
// damaged.
func TestHostDiskCheck(t *testing.T) {
	testreq.Commands(t, "mkfs.ext4", "e2fsck", "debugfs")
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		name   string
		damage func(t *testing.T, img string)
		ok     bool
	}{
		{"clean", func(*testing.T, string) {}, true},
		{"journal to replay", func(t *testing.T, img string) {
			if out, err := exec.Command("debugfs", "-w", "-R", "feature needs_recovery", img).CombinedOutput(); err != nil {
				t.Fatalf("debugfs: %v: %s", err, out)
			}
		}, true},
		{"group descriptors overwritten", func(t *testing.T, img string) {
			f, err := os.OpenFile(img, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, 3072)
			for i := range junk {
				junk[i] = 0xa5
			}
			if _, err := f.WriteAt(junk, 2048); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(dir, tt.name+".img")
			if err := (HostDisk{}).Create(ctx, img, 32<<20, "ext4"); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, img)
			if err := (HostDisk{}).Check(ctx, img, "ext4"); (err == nil) != tt.ok {
				t.Fatalf("Check = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			out, err := exec.Command("debugfs", "-R", "features", img).CombinedOutput()
			if err != nil || strings.Contains(string(out), "needs_recovery") {
				t.Fatalf("the journal was not replayed before the check: %v: %s", err, out)
			}
		})
	}
}

func TestCappedBufferKeepsHead(t *testing.T) {
	c := &cappedBuffer{max: 8}
	for _, w := range []string{"abc", "defgh", "ijk"} {
		if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := c.String(); got != "abcdefgh" {
		t.Fatalf("kept %q, want the first 8 bytes", got)
	}
}
