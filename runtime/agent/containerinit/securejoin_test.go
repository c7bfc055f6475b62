package containerinit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/lib", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"abs-etc":       "/etc",
		"rel-lib":       "usr/lib",
		"escape":        "../../../../etc",
		"abs-escape":    "/../../tmp",
		"var/run":       "../run",
		"loop1":         "loop2",
		"loop2":         "loop1",
		"usr/lib/up":    "../..",
		"dangling":      "/nonexistent/dir",
		"etc/resolv":    "/run/resolv.conf",
		"usr/lib/chain": "../../abs-etc",
		"self":          "self",
		"to-root":       "/",
		"to-dotdot":     "..",
		"var/deep":      "../../../../../../../../usr/../../etc",
		"dangling-up":   "../../outside/file",
		"var/abs-rel":   "/var/../rel-lib",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path string
		want string // relative to root; "" is root itself
	}{
		{"/", ""},
		{"/etc/hosts", "/etc/hosts"},
		{"etc/hosts", "/etc/hosts"},
		{"/../../etc", "/etc"},
		{"/abs-etc/passwd", "/etc/passwd"},
		{"/rel-lib/x", "/usr/lib/x"},
		{"/escape/shadow", "/etc/shadow"},
		{"/abs-escape", "/tmp"},
		{"/var/run/docker.sock", "/run/docker.sock"},
		{"/usr/lib/up/etc", "/etc"},
		{"/dangling/file", "/nonexistent/dir/file"},
		{"/etc/resolv", "/run/resolv.conf"},
		{"/usr/lib/chain/x", "/etc/x"},
		{"/missing/../etc", "/etc"},
		{"/a/./b//c/", "/a/b/c"},
		{"/to-root/etc", "/etc"},
		{"/to-dotdot/../etc", "/etc"},
		{"/var/deep/group", "/etc/group"},
		{"/dangling-up", "/outside/file"},
		{"/var/abs-rel/y", "/usr/lib/y"},
		{"/rel-lib/../x", "/usr/x"}, // ".." after a symlink applies to its target
		{"../../../../..", ""},
		{"/abs-escape/../../../x", "/x"},
	}
	for _, tt := range tests {
		got, err := secureJoin(root, tt.path)
		if err != nil {
			t.Errorf("secureJoin(%q): %v", tt.path, err)
			continue
		}
		if want := root + tt.want; got != want {
			t.Errorf("secureJoin(%q) = %q, want %q", tt.path, got, want)
		}
	}
	for _, loop := range []string{"/loop1/x", "/self", "/var/../self/y"} {
		if _, err := secureJoin(root, loop); !errors.Is(err, unix.ELOOP) {
			t.Errorf("symlink loop %s: got %v, want ELOOP", loop, err)
		}
	}
}
