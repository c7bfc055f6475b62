package pathtrust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

const nobody = 65534

// A tree of directories, links and files, each given an owner and a mode, checked as a prefix.
func TestCheck(t *testing.T) {
	testreq.Root(t)
	type entry struct {
		path   string
		mode   os.FileMode // with os.ModeSticky, os.ModeDir or os.ModeSymlink (target in link)
		uid    int
		link   string
		isFile bool
	}
	tests := []struct {
		name    string
		tree    []entry
		check   string
		entry   string // the component named in the error; "" for none
		inError string
	}{
		{name: "root-owned 0755", tree: []entry{{path: "a", mode: 0o755}, {path: "a/prefix", mode: 0o755}}, check: "a/prefix"},
		{name: "not there yet", tree: []entry{{path: "a", mode: 0o755}}, check: "a/prefix/more"},
		{name: "prefix owned by nobody", tree: []entry{{path: "a", mode: 0o755}, {path: "a/prefix", mode: 0o755, uid: nobody}},
			check: "a/prefix", entry: "a/prefix", inError: "owned by uid 65534"},
		{name: "parent owned by nobody", tree: []entry{{path: "a", mode: 0o755, uid: nobody}, {path: "a/prefix", mode: 0o755}},
			check: "a/prefix", entry: "a", inError: "chown root:root"},
		{name: "prefix group-writable", tree: []entry{{path: "a", mode: 0o755}, {path: "a/prefix", mode: 0o775}},
			check: "a/prefix", entry: "a/prefix", inError: "writable by its group"},
		{name: "parent world-writable", tree: []entry{{path: "a", mode: 0o777}, {path: "a/prefix", mode: 0o755}},
			check: "a/prefix", entry: "a", inError: "chmod go-w"},
		{name: "missing prefix under a world-writable parent", tree: []entry{{path: "a", mode: 0o777}},
			check: "a/prefix", entry: "a", inError: "writable by others"},
		{name: "sticky parent, root-owned prefix", tree: []entry{{path: "a", mode: 0o777 | os.ModeSticky}, {path: "a/prefix", mode: 0o755}},
			check: "a/prefix"},
		{name: "sticky parent, prefix made by nobody", tree: []entry{{path: "a", mode: 0o777 | os.ModeSticky}, {path: "a/prefix", mode: 0o755, uid: nobody}},
			check: "a/prefix", entry: "a/prefix", inError: "owned by uid"},
		{name: "sticky prefix itself", tree: []entry{{path: "a", mode: 0o755}, {path: "a/prefix", mode: 0o777 | os.ModeSticky}},
			check: "a/prefix", entry: "a/prefix", inError: "sticky bit does not protect"},
		{name: "sticky parent owned by nobody", tree: []entry{{path: "a", mode: 0o777 | os.ModeSticky, uid: nobody}, {path: "a/prefix", mode: 0o755}},
			check: "a/prefix", entry: "a", inError: "owned by uid"},
		{name: "link to a trusted dir", tree: []entry{{path: "real", mode: 0o755}, {path: "a", mode: 0o755}, {path: "a/prefix", mode: os.ModeSymlink, link: "../real"}},
			check: "a/prefix"},
		{name: "link to an untrusted dir", tree: []entry{{path: "real", mode: 0o755, uid: nobody}, {path: "a", mode: 0o755}, {path: "a/prefix", mode: os.ModeSymlink, link: "../real"}},
			check: "a/prefix", entry: "real", inError: "owned by uid"},
		{name: "link owned by nobody in a sticky dir", tree: []entry{{path: "real", mode: 0o755}, {path: "a", mode: 0o777 | os.ModeSticky}, {path: "a/prefix", mode: os.ModeSymlink, link: "../real", uid: nobody}},
			check: "a/prefix", entry: "a/prefix", inError: "owned by uid"},
		{name: "chain through an untrusted link dir", tree: []entry{{path: "real", mode: 0o755}, {path: "evil", mode: 0o777}, {path: "evil/l2", mode: os.ModeSymlink, link: "../real"},
			{path: "a", mode: 0o755}, {path: "a/prefix", mode: os.ModeSymlink, link: "../evil/l2"}},
			check: "a/prefix", entry: "evil", inError: "writable by others"},
		{name: "a file writable by others", tree: []entry{{path: "a", mode: 0o755}, {path: "a/dockerd", mode: 0o777, isFile: true}},
			check: "a/dockerd", entry: "a/dockerd", inError: "writable by others"},
		{name: "a root-owned file", tree: []entry{{path: "a", mode: 0o755}, {path: "a/dockerd", mode: 0o755, isFile: true}},
			check: "a/dockerd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.Chmod(dir, 0o755))
			for _, e := range tt.tree {
				p := filepath.Join(dir, e.path)
				switch {
				case e.mode&os.ModeSymlink != 0:
					must(t, os.Symlink(e.link, p))
				case e.isFile:
					must(t, os.WriteFile(p, []byte("x"), 0o600))
				default:
					must(t, os.Mkdir(p, 0o700))
				}
				must(t, os.Lchown(p, e.uid, 0))
				if e.mode&os.ModeSymlink == 0 {
					must(t, os.Chmod(p, e.mode))
				}
			}
			err := Check(filepath.Join(dir, tt.check), Owners())
			if tt.entry == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Check = %v, want an *Error naming %s", err, tt.entry)
			}
			if want := filepath.Join(dir, tt.entry); pe.Entry != want || !strings.Contains(err.Error(), want) {
				t.Errorf("error names %q (%v), want %q", pe.Entry, err, want)
			}
			if !strings.Contains(err.Error(), tt.inError) || !strings.Contains(err.Error(), "fix: ") {
				t.Errorf("error %q lacks %q or a fix", err, tt.inError)
			}
		})
	}
}

func TestCheckRelative(t *testing.T) {
	if err := Check("opt/kata-deploy", Owners()); err == nil {
		t.Error("a relative path was accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
