package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// mountTmpfs mounts a small tmpfs at a new directory and unmounts it at the end of the test.
func mountTmpfs(t *testing.T, flags uintptr) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	n, err := mountCount(p)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestShareReadOnlyOnHost: a read-only mount is read-only on the host side of the share, so QEMU
// cannot write through it whatever the guest does; every bind is nosuid,nodev, and flags of the
// source mount (noexec here) are kept.
func TestShareReadOnlyOnHost(t *testing.T) {
	testreq.Root(t)
	src := mountTmpfs(t, unix.MS_NOEXEC)
	rootfs := filepath.Join(src, "rootfs")
	os.Mkdir(rootfs, 0o755)
	for _, d := range []string{"ro", "rw", "rro", "rorbind"} {
		os.Mkdir(filepath.Join(src, d), 0o755)
	}
	// A submount inside the rro and ro+rbind sources.
	for _, d := range []string{"rro", "rorbind"} {
		sub := filepath.Join(src, d, "sub")
		os.Mkdir(sub, 0o755)
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(sub, unix.MNT_DETACH)
	}
	spec := &specs.Spec{
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Process: &specs.Process{Cwd: "/work"},
		Mounts: []specs.Mount{
			{Destination: "/ro", Type: "bind", Source: filepath.Join(src, "ro"), Options: []string{"bind", "ro"}},
			{Destination: "/rw", Type: "bind", Source: filepath.Join(src, "rw"), Options: []string{"rbind", "rw"}},
			{Destination: "/rro", Type: "bind", Source: filepath.Join(src, "rro"), Options: []string{"rbind", "rro"}},
			{Destination: "/rorbind", Type: "bind", Source: filepath.Join(src, "rorbind"), Options: []string{"rbind", "ro"}},
			{Destination: "/rwlast", Type: "bind", Source: filepath.Join(src, "rw"), Options: []string{"ro", "bind", "rw"}},
		},
	}
	dir := filepath.Join(t.TempDir(), "shared")
	s, _, err := share(dir, dir+".list", spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.unshare()
	tests := []struct {
		name     string
		path     string
		writable bool
	}{
		{"read-only rootfs", "rootfs", false},
		{"ro bind", "m0", false},
		{"rw rbind", "m1", true},
		{"rro rbind", "m2", false},
		{"rro submount", "m2/sub", false},
		{"ro rbind", "m3", false},
		{"ro rbind keeps its submount writable, as runc does", "m3/sub", true},
		{"last of ro/rw wins", "m4", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.path)
			err := os.WriteFile(filepath.Join(p, "written-by-qemu"), []byte("x"), 0o644)
			if tt.writable && err != nil {
				t.Errorf("write through %s: %v, want it to work", tt.path, err)
			}
			if !tt.writable && !errors.Is(err, unix.EROFS) {
				t.Errorf("write through %s: %v, want EROFS", tt.path, err)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(p, &st); err != nil {
				t.Fatal(err)
			}
			want := int64(unix.ST_NOSUID | unix.ST_NODEV)
			if !strings.Contains(tt.path, "/") {
				want |= unix.ST_NOEXEC // kept from the source mount
			}
			if st.Flags&want != want {
				t.Errorf("%s: statfs flags %#x, want %#x set", tt.path, st.Flags, want)
			}
		})
	}
	// The mount point the guest needs in the read-only rootfs was made before it turned read-only.
	if fi, err := os.Stat(filepath.Join(rootfs, "ro")); err != nil || !fi.IsDir() {
		t.Errorf("mount point /ro in the read-only rootfs: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "work")); err != nil || !fi.IsDir() {
		t.Errorf("working directory /work in the read-only rootfs: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC || st.Flags&unix.ST_NOEXEC == 0 {
		t.Errorf("share root: statfs %+v, %v; want a noexec tmpfs", st, err)
	}
}

// TestCleanupShareHostileTree: whatever the guest leaves in the share (symlinks to host mounts,
// fifos, deep trees, a file where a mount point was, names the shim never made), cleanup removes
// everything, detaches no host mount and deletes nothing outside the share.
func TestCleanupShareHostileTree(t *testing.T) {
	testreq.Root(t)
	tests := []struct {
		name  string
		tmpfs bool // the share root is our tmpfs (false: a state directory without it)
		guest func(t *testing.T, dir, victim string)
	}{
		{"symlink named like our bind, to a host mount", true, func(t *testing.T, dir, victim string) {
			unmountOrFail(t, filepath.Join(dir, "m0"))
			os.Remove(filepath.Join(dir, "m0"))
			symlinkOrFail(t, victim, filepath.Join(dir, "m0"))
		}},
		{"symlink to a host mount, plain directory", false, func(t *testing.T, dir, victim string) {
			symlinkOrFail(t, victim, filepath.Join(dir, "m0"))
			symlinkOrFail(t, victim, filepath.Join(dir, "rootfs"))
			symlinkOrFail(t, filepath.Dir(victim), filepath.Join(dir, "evil"))
		}},
		{"fifo, non-empty and deep directories", true, func(t *testing.T, dir, _ string) {
			fifoTree(t, dir)
		}},
		{"fifo, non-empty and deep directories, plain directory", false, func(t *testing.T, dir, _ string) {
			fifoTree(t, dir)
		}},
		{"file where a mount point was", true, func(t *testing.T, dir, _ string) {
			unmountOrFail(t, filepath.Join(dir, "m0"))
			os.Remove(filepath.Join(dir, "m0"))
			os.WriteFile(filepath.Join(dir, "m0"), []byte("x"), 0o644)
		}},
		{"share without a record, binds still mounted", true, func(t *testing.T, dir, victim string) {
			os.Remove(filepath.Join(filepath.Dir(dir), "shared.list"))
			unmountOrFail(t, dir) // binds on a plain directory: the layout before the tmpfs
			os.Mkdir(filepath.Join(dir, "m0"), 0o700)
			if err := unix.Mount(victim, filepath.Join(dir, "m0"), "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			symlinkOrFail(t, victim, filepath.Join(dir, "m9"))
		}},
		{"symlink in a directory named like a bind", false, func(t *testing.T, dir, victim string) {
			os.MkdirAll(filepath.Join(dir, "m0", "a"), 0o755)
			symlinkOrFail(t, victim, filepath.Join(dir, "m0", "a", "link"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			victim := mountTmpfs(t, 0)
			os.WriteFile(filepath.Join(victim, "precious"), []byte("data"), 0o644)
			state := t.TempDir()
			dir := filepath.Join(state, "shared")
			record := filepath.Join(state, "shared.list")
			if tt.tmpfs {
				src := t.TempDir()
				os.Mkdir(filepath.Join(src, "rootfs"), 0o755)
				spec := &specs.Spec{Root: &specs.Root{Path: filepath.Join(src, "rootfs")}, Mounts: []specs.Mount{
					{Destination: "/v", Type: "bind", Source: src, Options: []string{"rbind"}},
				}}
				if _, _, err := share(dir, record, spec); err != nil {
					t.Fatal(err)
				}
			} else {
				os.Mkdir(dir, 0o700)
				os.WriteFile(record, []byte("rootfs\nm0\n../../etc\n/\n"), 0o600)
			}
			tt.guest(t, dir, victim)
			if err := cleanupShare(dir, record); err != nil {
				t.Errorf("cleanup: %v", err)
			}
			if !isMountPoint(t, victim) {
				t.Errorf("the host mount %s was detached", victim)
			}
			if data, err := os.ReadFile(filepath.Join(victim, "precious")); string(data) != "data" {
				t.Errorf("the host file behind the symlink: %q, %v", data, err)
			}
			for _, p := range []string{dir, record} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", p, err)
				}
			}
			if err := cleanupShare(dir, record); err != nil {
				t.Errorf("second cleanup: %v", err)
			}
		})
	}
}

// TestRemoveTreeNeverEntersAMount: a mount still in place under the share is neither entered nor
// followed: cleanup reports it and the user's files stay.
func TestRemoveTreeNeverEntersAMount(t *testing.T) {
	testreq.Root(t)
	victim := mountTmpfs(t, 0)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("data"), 0o644)
	dir := t.TempDir()
	target := filepath.Join(dir, "unrecorded")
	os.Mkdir(target, 0o700)
	if err := unix.Mount(victim, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	if err := removeTree(dir); err == nil || !strings.Contains(err.Error(), "another filesystem") {
		t.Errorf("removeTree over a live mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(victim, "precious")); err != nil {
		t.Errorf("the user's file is gone: %v", err)
	}
}

func TestBindModeOf(t *testing.T) {
	tests := []struct {
		opts []string
		want bindMode
	}{
		{[]string{"rbind", "rprivate"}, bindMode{recursive: true}},
		{[]string{"bind", "ro"}, bindMode{readonly: true}},
		{[]string{"rbind", "rro"}, bindMode{recursive: true, readonly: true, recursiveRO: true}},
		{[]string{"ro", "rw"}, bindMode{}},
		{[]string{"rbind", "slave"}, bindMode{recursive: true, receive: true}},
		{[]string{"bind", "rshared"}, bindMode{receive: true}},
		{[]string{"rslave", "rprivate"}, bindMode{}},
	}
	for _, tt := range tests {
		if got := bindModeOf(specs.Mount{Options: tt.opts}); got != tt.want {
			t.Errorf("%v: %+v, want %+v", tt.opts, got, tt.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134`: `/x\`, `/bad\0`: `/bad\0`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func unmountOrFail(t *testing.T, p string) {
	t.Helper()
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

func symlinkOrFail(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func fifoTree(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(dir, "deep")
	p := deep
	for i := range 100 {
		p = filepath.Join(p, strconv.Itoa(i))
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o644)
	unix.Mkfifo(filepath.Join(p, "fifo"), 0o600)
	os.Chmod(filepath.Join(deep, "0"), 0o000) // an unreadable directory does not stop root
}

// TestMakeMountPointsStaysInRoot: symlinks an earlier guest left in the rootfs are resolved inside
// it, never on the host.
func TestMakeMountPointsStaysInRoot(t *testing.T) {
	rootfs := t.TempDir()
	outside := t.TempDir()
	symlinkOrFail(t, outside, filepath.Join(rootfs, "abs"))
	symlinkOrFail(t, "../../../../../../"+outside, filepath.Join(rootfs, "rel"))
	file := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(file, nil, 0o644)
	spec := &specs.Spec{Root: &specs.Root{Path: rootfs}, Process: &specs.Process{Cwd: "/abs/cwd"}, Mounts: []specs.Mount{
		{Destination: "/rel/data", Type: "bind", Source: t.TempDir(), Options: []string{"rbind"}},
		{Destination: "/abs/etc/hosts", Type: "bind", Source: file, Options: []string{"rbind"}},
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: file, Options: []string{"rbind"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts"},
	}}
	if err := makeMountPoints(spec); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("created outside the rootfs: %v", entries)
	}
	for _, p := range []string{"proc", "etc/resolv.conf"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("%s not created inside the rootfs: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "dev", "pts")); !os.IsNotExist(err) {
		t.Errorf("/dev/pts, which the guest makes in /dev's tmpfs, was created in the rootfs: %v", err)
	}
}

// TestShareReceivesHostMounts: a bind the spec makes slave (or shared) receives what the host
// mounts under its source after the share was made; a private one does not.
func TestShareReceivesHostMounts(t *testing.T) {
	testreq.Root(t)
	src := mountTmpfs(t, 0)
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(src, "rootfs")
	later := t.TempDir()
	if err := os.WriteFile(filepath.Join(later, "slave-testfile"), []byte("Test"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"rootfs", "vol", "vol/mnt1"} {
		os.Mkdir(filepath.Join(src, d), 0o755)
	}
	spec := &specs.Spec{
		Root: &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{
			{Destination: "/slave", Type: "bind", Source: filepath.Join(src, "vol"), Options: []string{"rbind", "slave"}},
			{Destination: "/private", Type: "bind", Source: filepath.Join(src, "vol"), Options: []string{"rbind", "rprivate"}},
		},
	}
	dir := filepath.Join(t.TempDir(), "shared")
	s, _, err := share(dir, dir+".list", spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.unshare()
	mnt1 := filepath.Join(src, "vol", "mnt1")
	if err := unix.Mount(later, mnt1, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt1, unix.MNT_DETACH)
	if b, err := os.ReadFile(filepath.Join(dir, "m0", "mnt1", "slave-testfile")); err != nil || string(b) != "Test" {
		t.Errorf("slave bind: the host's later mount is not seen: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "m1", "mnt1", "slave-testfile")); err == nil {
		t.Errorf("private bind: the host's later mount reached it")
	}
}
