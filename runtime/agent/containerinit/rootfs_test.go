package containerinit

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseMountPoints(t *testing.T) {
	mountinfo := `1 0 0:2 / / rw - rootfs rootfs rw
22 1 0:20 / /proc rw,nosuid,nodev,noexec - proc proc rw
23 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=1k
25 1 0:24 / /run rw - tmpfs tmpfs rw
30 25 0:33 / /run/kata-containers/shared/my\040share rw - 9p rootfs rw
short line
`
	got := parseMountPoints([]byte(mountinfo))
	want := []string{"/", "/proc", "/dev", "/run", "/run/kata-containers/shared/my share"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMountsToDetach(t *testing.T) {
	mps := []string{"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp",
		"/run/shared/c1", "/run/shared/c1/rootfs", "/run/shared/c1/rootfs/proc", "/run/shared/c2",
		"/run/shared/c10", "/dev/pts"}
	got := mountsToDetach(mps, "/run/shared/c1/rootfs")
	want := []string{"/run/shared/c10", "/run/shared/c2", "/dev/pts", "/dev/shm", "/dev", "/proc", "/sys", "/tmp"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWithDefaultDev(t *testing.T) {
	proc := specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	dev := specs.Mount{Destination: "/dev/", Type: "tmpfs", Source: "tmpfs"}
	pts := specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts"}

	got := withDefaultDev([]specs.Mount{proc})
	if len(got) != 3 || got[0].Destination != "/dev" || got[1].Destination != "/dev/pts" || got[2].Destination != "/proc" {
		t.Errorf("no /dev: got %+v", got)
	}
	got = withDefaultDev([]specs.Mount{proc, pts})
	if len(got) != 3 || got[0].Destination != "/dev" || !reflect.DeepEqual(got[1], proc) || got[2].Type != "devpts" {
		t.Errorf("only /dev/pts: got %+v", got)
	}
	in := []specs.Mount{dev, proc}
	if got := withDefaultDev(in); !reflect.DeepEqual(got, in) {
		t.Errorf("with /dev: got %+v", got)
	}
}

func TestIsBind(t *testing.T) {
	tests := []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
	}
	for _, tt := range tests {
		if got := isBind(tt.m); got != tt.want {
			t.Errorf("isBind(%+v) = %v", tt.m, got)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		dir, p string
		want   bool
	}{
		{"/run", "/run", true},
		{"/run", "/run/x", true},
		{"/run", "/running", false},
		{"/", "/x", true},
		{"/run/x", "/run", false},
	}
	for _, tt := range tests {
		if got := within(tt.dir, tt.p); got != tt.want {
			t.Errorf("within(%q, %q) = %v", tt.dir, tt.p, got)
		}
	}
}

// TestEnsureMountPoint: a mount point that exists as what the mount needs is kept (for a file, any
// non-directory, never opened); a missing one is made (with its parents); a link, or one of the
// other kind, is refused rather than followed or replaced.
func TestEnsureMountPoint(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		dir     bool
		wantErr bool
		want    os.FileMode // the type target has afterwards
	}{
		{name: "existing file", target: "etc/hostname", want: 0},
		{name: "existing directory", target: "proc", dir: true, want: os.ModeDir},
		{name: "missing file", target: "new/sub/file", want: 0},
		{name: "missing directory", target: "new/sub/dir", dir: true, want: os.ModeDir},
		{name: "link to a file", target: "etc/link", wantErr: true, want: os.ModeSymlink},
		{name: "FIFO for a file", target: "etc/fifo", want: os.ModeNamedPipe},
		{name: "directory for a file", target: "proc", wantErr: true, want: os.ModeDir},
		{name: "file for a directory", target: "etc/hostname", dir: true, wantErr: true, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range []string{"etc", "proc"} {
				if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("box\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc/link")); err != nil {
				t.Fatal(err)
			}
			// Opened, it would block the test until a writer came.
			if err := unix.Mkfifo(filepath.Join(root, "etc/fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(root, tt.target)
			err := ensureMountPoint(target, tt.dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tt.wantErr)
			}
			fi, err := os.Lstat(target)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Type(); got != tt.want {
				t.Errorf("%s is %v afterwards, want %v", tt.target, got, tt.want)
			}
			if b, err := os.ReadFile(filepath.Join(root, "etc/hostname")); err != nil || string(b) != "box\n" {
				t.Errorf("etc/hostname = %q, %v: an existing mount point must be left as it is", b, err)
			}
		})
	}
}
