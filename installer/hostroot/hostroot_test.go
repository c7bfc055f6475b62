package hostroot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir     string
		ok      bool
		wantErr string
	}{
		{dir: "", ok: false},
		{dir: "/", ok: false},
		{dir: dir, ok: true},
		{dir: "host", wantErr: "clean absolute"},
		{dir: dir + "/../" + filepath.Base(dir), wantErr: "clean absolute"},
		{dir: filepath.Join(dir, "missing"), wantErr: "-v /:/host"},
		{dir: file, wantErr: "not a directory"},
	} {
		r, ok, err := Open(tc.dir)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Open(%q) = %v, want an error with %q", tc.dir, err, tc.wantErr)
			}
			continue
		}
		if err != nil || ok != tc.ok || (ok && r.Dir != tc.dir) {
			t.Errorf("Open(%q) = %+v, %v, %v; want ok %v", tc.dir, r, ok, err, tc.ok)
		}
	}
}

// hostRoot makes a host root whose /run and /var are links: relative, absolute and "..", each
// aimed outside the root at escape (which must stay empty).
func hostRoot(t *testing.T, run, varDir string) (root, escape string) {
	t.Helper()
	base := t.TempDir()
	root, escape = filepath.Join(base, "root"), filepath.Join(base, "escape")
	for _, d := range []string{root, escape} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"run": run, "var": varDir} {
		if target == "" {
			continue
		}
		if err := os.Symlink(strings.ReplaceAll(target, "ESCAPE", escape), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root, escape
}

func source(t *testing.T, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("content of "+name), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStagingStaysUnderTheRoot(t *testing.T) {
	// A link whose target is missing inside the root is refused (nothing is created through
	// it); one that resolves inside the root is followed there.
	for _, tc := range []struct {
		name, run string
		refused   bool
	}{
		{"plain", "", false},
		{"absolute link out", "ESCAPE", true},
		{"dot-dot link out", "../escape", true},
		{"absolute link in", "/var/run", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, escape := hostRoot(t, tc.run, "")
			if err := os.MkdirAll(filepath.Join(root, "var", "run"), 0o755); err != nil {
				t.Fatal(err)
			}
			r, _, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			st, err := r.NewStaging()
			assertEmpty(t, escape)
			if tc.refused {
				if err == nil {
					t.Fatal("NewStaging followed a link out of the root")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			shim := source(t, "containerd-shim-kata-v2", 0o755)
			got, err := st.Copy(shim)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, "/run/"+StagePrefix) || got != st.HostDir()+"/containerd-shim-kata-v2" {
				t.Errorf("host path %q, want under /run/%s*", got, StagePrefix)
			}
			assertEmpty(t, escape)
			// Where the copy really is: the host's /run resolved inside the root.
			matches, _ := filepath.Glob(filepath.Join(root, "*", "*", StagePrefix+"*", "containerd-shim-kata-v2"))
			direct, _ := filepath.Glob(filepath.Join(root, "*", StagePrefix+"*", "containerd-shim-kata-v2"))
			matches = append(matches, direct...)
			if len(matches) != 1 {
				t.Fatalf("copies under the root: %v, want one", matches)
			}
			fi, err := os.Stat(matches[0])
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("copy: %v, %v; want mode 0755", fi, err)
			}
			if err := st.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Dir(matches[0])); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("staging directory left after Remove: %v", err)
			}
		})
	}
}

func TestCopyIntoStaysUnderTheRoot(t *testing.T) {
	for _, tc := range []struct {
		name, varDir string
		refused      bool
	}{
		{"plain", "", false},
		{"absolute link out", "ESCAPE", true},
		{"dot-dot link out", "../../escape", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, escape := hostRoot(t, "", tc.varDir)
			r, _, _ := Open(root)
			deb := source(t, "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb", 0o644)
			for range 2 { // a second copy replaces the first
				got, err := r.CopyInto(deb, "/var/cache/kata-deploy/kernel")
				assertEmpty(t, escape)
				if tc.refused {
					if err == nil {
						t.Fatal("CopyInto followed a link out of the root")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != "/var/cache/kata-deploy/kernel/"+filepath.Base(deb) {
					t.Errorf("host path %q", got)
				}
			}
			assertEmpty(t, escape)
			var found []string
			_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					found = append(found, p)
				}
				return nil
			})
			if len(found) != 1 || filepath.Base(found[0]) != filepath.Base(deb) {
				t.Errorf("files under the root: %v, want only the kernel package", found)
			}
			if _, err := r.CopyInto(deb, "var/cache"); err == nil {
				t.Error("CopyInto accepted a relative directory")
			}
		})
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%s outside the root got %v", dir, entries)
	}
}

func TestImageKernel(t *testing.T) {
	for _, tc := range []struct {
		files   []string
		want    string
		wantErr string
	}{
		{files: []string{"kata-deploy", "kata-agent"}, wantErr: "no kernel package"},
		{files: []string{"kata-agent", "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"}, want: "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb"},
		{files: []string{"linux-image-a.deb", "linux-image-b.deb"}, wantErr: "2 kernel packages"},
	} {
		dir := t.TempDir()
		for _, f := range tc.files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ImageKernel(dir)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %q, %v; want an error with %q", tc.files, got, err, tc.wantErr)
			}
		case err != nil || got != filepath.Join(dir, tc.want):
			t.Errorf("%v: %q, %v; want %s", tc.files, got, err, tc.want)
		}
	}
}

// TestEnter enters a temporary host root in a child process (the test binary again): there, an
// absolute link leads to the root's own file, not the machine's.
func TestEnter(t *testing.T) {
	if root := os.Getenv("HOSTROOT_TEST_ENTER"); root != "" {
		r, _, err := Open(root)
		if err == nil {
			err = r.Enter()
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/etc/link")
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("read: " + string(b) + "\n")
		return
	}
	testreq.Root(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("the host's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(root, "etc", "link")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnter$", "-test.v")
	cmd.Env = append(os.Environ(), "HOSTROOT_TEST_ENTER="+root)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "read: the host's\n") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
