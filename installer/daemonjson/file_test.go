package daemonjson

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"golang.org/x/sys/unix"
)

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestReadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.json")
	data, info, err := ReadFile(path)
	if err != nil || data != nil || info.Exists || info.Target != path {
		t.Fatalf("ReadFile(missing) = %q, %+v, %v", data, info, err)
	}
	if err := WriteFileAtomic(path, []byte("{}\n"), info); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v, %v; want mode 0644", st.Mode(), err)
	}
}

func TestReadFileRefusesDirectoryAndDanglingLink(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := ReadFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("ReadFile(dir) err = %v", err)
	}
	link := filepath.Join(dir, "daemon.json")
	if err := os.Symlink("nowhere.json", link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFile(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("ReadFile(dangling link) err = %v", err)
	}
}

func TestWriteFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real", "daemon.json")
	link := filepath.Join(dir, "etc", "daemon.json")
	for _, d := range []string{filepath.Dir(real), filepath.Dir(link)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, real, "{}\n", 0o640)
	if err := os.Symlink("../real/daemon.json", link); err != nil {
		t.Fatal(err)
	}
	data, info, err := ReadFile(link)
	if err != nil || string(data) != "{}\n" {
		t.Fatalf("ReadFile = %q, %v", data, err)
	}
	if want, _ := filepath.EvalSymlinks(real); info.Target != want {
		t.Fatalf("Target = %s, want %s", info.Target, want)
	}
	if err := WriteFileAtomic(link, []byte(`{"debug": true}`), info); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v %v", st.Mode(), err)
	}
	got, _ := os.ReadFile(real)
	if string(got) != `{"debug": true}` {
		t.Fatalf("target = %q", got)
	}
	if st, _ := os.Stat(real); st.Mode().Perm() != 0o640 {
		t.Fatalf("target mode = %v, want 0640", st.Mode().Perm())
	}
	if names := listDir(t, filepath.Dir(link)); !slices.Equal(names, []string{"daemon.json"}) {
		t.Fatalf("link directory = %v", names)
	}
}

func TestWriteKeepsMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o640, 0o644, 0o400} {
		path := filepath.Join(t.TempDir(), "daemon.json")
		writeFile(t, path, "{}", mode)
		_, info, err := ReadFile(path)
		if err != nil || info.Mode != mode {
			t.Fatalf("ReadFile mode = %v, %v; want %v", info.Mode, err, mode)
		}
		if err := WriteFileAtomic(path, []byte("{ }"), info); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != mode {
			t.Errorf("mode after write = %v, want %v", st.Mode().Perm(), mode)
		}
		if names := listDir(t, filepath.Dir(path)); !slices.Equal(names, []string{"daemon.json"}) {
			t.Errorf("directory = %v, want only daemon.json", names)
		}
	}
}

func TestWriteKeepsOwner(t *testing.T) {
	testreq.Root(t) // changing a file's owner
	path := filepath.Join(t.TempDir(), "daemon.json")
	writeFile(t, path, "{}", 0o640)
	if err := os.Chown(path, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	_, info, err := ReadFile(path)
	if err != nil || info.UID != 1234 || info.GID != 5678 {
		t.Fatalf("ReadFile owner = %d:%d, %v", info.UID, info.GID, err)
	}
	if err := WriteFileAtomic(path, []byte(`{"debug": true}`), info); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 1234 || sys.Gid != 5678 || st.Mode().Perm() != 0o640 {
		t.Fatalf("after write: owner %d:%d mode %v; want 1234:5678 0640", sys.Uid, sys.Gid, st.Mode().Perm())
	}
}

// readOnlyDir returns a directory holding daemon.json that the caller cannot
// write to: a read-only tmpfs for root (who ignores permission bits), a 0555
// directory otherwise.
func readOnlyDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		writeFile(t, filepath.Join(dir, "daemon.json"), content, 0o644)
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		return dir
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		testreq.Skipf(t, "root but cannot mount a tmpfs (%v): run this test with CAP_SYS_ADMIN or as non-root", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	writeFile(t, filepath.Join(dir, "daemon.json"), content, 0o644)
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		testreq.Skipf(t, "cannot remount the tmpfs read-only: %v", err)
	}
	return dir
}

func TestWriteReadOnlyDirectory(t *testing.T) {
	dir := readOnlyDir(t, "{}\n")
	path := filepath.Join(dir, "daemon.json")
	_, info, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	err = WriteFileAtomic(path, []byte(`{"debug": true}`), info)
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("WriteFileAtomic in a read-only directory: err = %v, want a clear error", err)
	}
	t.Logf("error as the user sees it: %v", err)
	if got, _ := os.ReadFile(path); string(got) != "{}\n" {
		t.Fatalf("file changed to %q", got)
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"daemon.json"}) {
		t.Fatalf("directory = %v, want only daemon.json (no temporary file)", names)
	}
	if _, err := Backup(path, time.Now()); err == nil {
		t.Fatal("Backup in a read-only directory succeeded")
	}
	if names := listDir(t, dir); !slices.Equal(names, []string{"daemon.json"}) {
		t.Fatalf("directory after Backup = %v", names)
	}
}

func TestBackup(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	for _, mode := range []fs.FileMode{0o600, 0o640, 0o644} {
		dir := t.TempDir()
		path := filepath.Join(dir, "daemon.json")
		writeFile(t, path, `{"debug": true}`, mode)
		first, err := Backup(path, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "daemon.json.kata-deploy-20250304T040607Z.bak"); first != want {
			t.Fatalf("backup path = %s, want %s", first, want)
		}
		second, err := Backup(path, now)
		if err != nil || second == first || !strings.HasSuffix(second, "Z-1.bak") {
			t.Fatalf("second backup in the same second = %s, %v", second, err)
		}
		for _, b := range []string{first, second} {
			got, _ := os.ReadFile(b)
			st, _ := os.Stat(b)
			if !bytes.Equal(got, []byte(`{"debug": true}`)) || st.Mode().Perm() != mode {
				t.Errorf("%s: %q mode %v; want the original content and mode %v", b, got, st.Mode().Perm(), mode)
			}
		}
	}
}

func TestBackupNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.json")
	writeFile(t, path, "new", 0o644)
	now := time.Unix(0, 0)
	existing := filepath.Join(dir, "daemon.json.kata-deploy-19700101T000000Z.bak")
	writeFile(t, existing, "old", 0o600)
	got, err := Backup(path, now)
	if err != nil || got == existing {
		t.Fatalf("Backup = %s, %v", got, err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "old" {
		t.Fatalf("existing backup overwritten: %q", b)
	}
}

func TestBackupMissingAndSymlink(t *testing.T) {
	dir := t.TempDir()
	if p, err := Backup(filepath.Join(dir, "daemon.json"), time.Now()); p != "" || err != nil {
		t.Fatalf("Backup(missing) = %q, %v", p, err)
	}
	real := filepath.Join(dir, "real.json")
	writeFile(t, real, "{}", 0o600)
	if err := os.Symlink("real.json", filepath.Join(dir, "daemon.json")); err != nil {
		t.Fatal(err)
	}
	p, err := Backup(filepath.Join(dir, "daemon.json"), time.Unix(0, 0))
	if err != nil || filepath.Base(p) != "real.json.kata-deploy-19700101T000000Z.bak" {
		t.Fatalf("Backup(symlink) = %q, %v; want a copy of the target next to it", p, err)
	}
}

func TestBackupKeepsOwner(t *testing.T) {
	testreq.Root(t) // changing a file's owner
	path := filepath.Join(t.TempDir(), "daemon.json")
	writeFile(t, path, "{}", 0o640)
	if err := os.Chown(path, 0, 4321); err != nil {
		t.Fatal(err)
	}
	b, err := Backup(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(b)
	if sys := st.Sys().(*syscall.Stat_t); sys.Gid != 4321 || st.Mode().Perm() != 0o640 {
		t.Fatalf("backup gid %d mode %v; want 4321 and 0640", sys.Gid, st.Mode().Perm())
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	// The inode changes: the new content arrived by rename, not by
	// truncating and rewriting the file in place.
	path := filepath.Join(t.TempDir(), "daemon.json")
	writeFile(t, path, "{}", 0o644)
	before, _ := os.Stat(path)
	_, info, _ := ReadFile(path)
	if err := WriteFileAtomic(path, []byte(`{"a":1}`), info); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if os.SameFile(before, after) {
		t.Fatal("file rewritten in place, not replaced by rename")
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	err := WriteFileAtomic(filepath.Join(dir, "docker", "daemon.json"), []byte("{}"), FileInfo{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("write into a missing directory: err = %v, want not-exist", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
}
