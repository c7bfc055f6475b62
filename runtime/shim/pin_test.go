package shim

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPinToOwnVersion(t *testing.T) {
	prefix := t.TempDir()
	for _, v := range []string{"a1", "b2"} {
		dir := filepath.Join(prefix, "versions", v, "share", "defaults")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "configuration-qemu.toml"), []byte(v), 0o644)
	}
	os.Symlink("versions/b2", filepath.Join(prefix, "current")) // switched to b2 after shim a1 started
	current := filepath.Join(prefix, "current", "share", "defaults", "configuration-qemu.toml")
	shimA := filepath.Join(prefix, "versions", "a1", "bin", "containerd-shim-kata-v2")
	tests := []struct {
		name, config, exe, want string
	}{
		{"through current: the shim's own version", current, shimA, filepath.Join(prefix, "versions", "a1", "share", "defaults", "configuration-qemu.toml")},
		{"not through current: unchanged", "/etc/kata/configuration-qemu.toml", shimA, "/etc/kata/configuration-qemu.toml"},
		{"shim not in a versions dir: unchanged", current, "/usr/local/bin/containerd-shim-kata-v2", current},
		{"own version lacks the file: unchanged", filepath.Join(prefix, "current", "other.toml"), shimA, filepath.Join(prefix, "current", "other.toml")},
		{"escaping current: unchanged", filepath.Join(prefix, "current", "..", "x.toml"), shimA, filepath.Join(prefix, "current", "..", "x.toml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pinToOwnVersion(tt.config, tt.exe); got != tt.want {
				t.Errorf("pinToOwnVersion(%q, %q) = %q, want %q", tt.config, tt.exe, got, tt.want)
			}
		})
	}
}
