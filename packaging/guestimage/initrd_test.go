package guestimage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

type cpioEntry struct {
	hdr  cpio.Header
	data []byte
}

func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	var out []cpioEntry
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read cpio: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cpioEntry{*h, data})
	}
}

func sampleFiles() []File {
	return []File{
		{Path: "/lib/modules/virtio.ko", Mode: 0o644, Data: []byte("ko-1")},
		{Path: "/init", Mode: 0o755, Data: []byte("agent")},
		{Path: "/etc/kata-deploy/modules.load", Mode: 0o644, Data: []byte("virtio\n")},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777, Linkname: "busybox"},
		{Path: "/dev", Mode: fs.ModeDir | 0o755},
	}
}

func TestWriteInitrdLayout(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteInitrd(&buf, sampleFiles()); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("070701")) {
		t.Fatalf("not a newc archive: %q", buf.Bytes()[:6])
	}
	entries := readCpio(t, buf.Bytes())
	var names []string
	for _, e := range entries {
		names = append(names, e.hdr.Name)
		if e.hdr.Uid != 0 || e.hdr.Guid != 0 || e.hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d mtime %v, want 0:0 and 0", e.hdr.Name, e.hdr.Uid, e.hdr.Guid, e.hdr.ModTime.Unix())
		}
	}
	want := []string{"bin", "bin/sh", "dev", "etc", "etc/kata-deploy", "etc/kata-deploy/modules.load",
		"init", "lib", "lib/modules", "lib/modules/virtio.ko", "tmp"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries = %v\nwant      %v", names, want)
	}
	modes := map[string]cpio.FileMode{
		"bin":                          cpio.TypeDir | 0o755,
		"bin/sh":                       cpio.TypeSymlink | 0o777,
		"init":                         cpio.TypeReg | 0o755,
		"lib/modules/virtio.ko":        cpio.TypeReg | 0o644,
		"tmp":                          cpio.TypeDir | cpio.ModeSticky | 0o777,
		"etc/kata-deploy/modules.load": cpio.TypeReg | 0o644,
	}
	for _, e := range entries {
		if m, ok := modes[e.hdr.Name]; ok && e.hdr.Mode != m {
			t.Errorf("%s: mode %o, want %o", e.hdr.Name, e.hdr.Mode, m)
		}
		switch e.hdr.Name {
		case "init":
			if string(e.data) != "agent" {
				t.Errorf("init holds %q", e.data)
			}
		case "bin/sh":
			if e.hdr.Linkname != "busybox" {
				t.Errorf("symlink target %q", e.hdr.Linkname)
			}
		}
	}
}

func TestWriteInitrdReproducible(t *testing.T) {
	sum := func(files []File) [32]byte {
		var buf bytes.Buffer
		if err := WriteInitrd(&buf, files); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(buf.Bytes())
	}
	files := sampleFiles()
	first := sum(files)
	reversed := slices.Clone(files)
	slices.Reverse(reversed)
	if sum(reversed) != first {
		t.Fatal("input order changed the archive")
	}
	if sum(files) != first {
		t.Fatal("same input, different bytes")
	}
	changed := slices.Clone(files)
	changed[0].Data = []byte("ko-2")
	if sum(changed) == first {
		t.Fatal("different content, same archive")
	}
}

func TestWriteInitrdRejects(t *testing.T) {
	tests := []struct {
		name  string
		files []File
		want  string
	}{
		{"dot-dot", []File{{Path: "/lib/../../etc/shadow", Mode: 0o644}}, ".."},
		{"root", []File{{Path: "/", Mode: fs.ModeDir | 0o755}}, "root"},
		{"duplicate", []File{{Path: "/init", Mode: 0o755}, {Path: "init", Mode: 0o755}}, "twice"},
		{"file as parent", []File{{Path: "/a", Mode: 0o644}, {Path: "/a/b", Mode: 0o644}}, "not a directory"},
		{"device node", []File{{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600}}, "unsupported file type"},
		{"symlink without target", []File{{Path: "/bin/sh", Mode: fs.ModeSymlink | 0o777}}, "no target"},
		{"NUL in name", []File{{Path: "/a\x00b", Mode: 0o644}}, "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteInitrd(io.Discard, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// The system cpio tool (GNU cpio, as initramfs-tools uses) must list and
// extract the archive the same way the kernel will.
func TestWriteInitrdWithGNUCpio(t *testing.T) {
	testreq.Command(t, "cpio")
	var buf bytes.Buffer
	if err := WriteInitrd(&buf, initrdFiles([]byte("agent"), []Module{{Name: "virtio", Data: []byte("ko")}}, nil, nil)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "-d", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	for path, want := range map[string]string{"init": "agent", "lib/modules/virtio.ko": "ko", "etc/kata-deploy/modules.load": "virtio\n"} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", path, got, err)
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s missing: %v", d, err)
		}
	}
}
