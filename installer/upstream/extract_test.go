package upstream

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// item is one tar entry of a synthetic release.
type item struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64 // -1: len(body)
}

func file(name, body string) item {
	return item{name: name, body: body, typ: tar.TypeReg, mode: 0o644, size: -1}
}
func dir(name string) item { return item{name: name, typ: tar.TypeDir, mode: 0o755} }
func link(name, target string) item {
	return item{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

// release is a minimal, valid release: what upstream's tarball holds, in small.
func release() []item {
	return []item{
		dir("./"), dir("./opt/"), dir("./opt/kata/"), dir("./opt/kata/bin/"),
		{name: "./opt/kata/bin/containerd-shim-kata-v2", body: "#!/bin/sh\necho shim\n", typ: tar.TypeReg, mode: 0o4755, size: -1},
		file("./opt/kata/VERSION", "3.18.0\n"),
		dir("./opt/kata/share/"), dir("./opt/kata/share/defaults/"), dir("./opt/kata/share/defaults/kata-containers/"),
		file("./opt/kata/share/defaults/kata-containers/configuration-qemu.toml", "[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\n"),
		link("./opt/kata/share/defaults/kata-containers/configuration.toml", "configuration-qemu.toml"),
		dir("./opt/kata/share/kata-containers/"),
		file("./opt/kata/share/kata-containers/vmlinux-6.12.28-153", "vmlinux"),
		link("./opt/kata/share/kata-containers/vmlinux.container", "vmlinux-6.12.28-153"),
		link("./opt/kata/bin/kata-runtime-abs", "/opt/kata/bin/containerd-shim-kata-v2"),
	}
}

func tarball(t testing.TB, items []item) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, it := range items {
		h := &tar.Header{Name: it.name, Typeflag: it.typ, Mode: it.mode, Linkname: it.link, Format: tar.FormatPAX}
		if it.typ == tar.TypeReg {
			h.Size = it.size
			if it.size < 0 {
				h.Size = int64(len(it.body))
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if it.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, it.body); err != nil && it.size >= 0 {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compressed writes the tar of items compressed as comp ("xz", "zst", or "" for none) into dir.
func compressed(t testing.TB, dir, name, comp string, tarData []byte) string {
	t.Helper()
	var out bytes.Buffer
	switch comp {
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(tarData)
		w.Close()
	case "zst":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(tarData)
		w.Close()
	default:
		out.Write(tarData)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExtractRelease(t *testing.T) {
	for _, comp := range []string{"xz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			work := t.TempDir()
			tb := compressed(t, work, "kata-static-3.18.0-amd64.tar."+comp, comp, tarball(t, release()))
			dest := filepath.Join(work, "kata")
			x, err := Extract(context.Background(), tb, dest, DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if x.Version != "3.18.0" {
				t.Errorf("version %q", x.Version)
			}
			var files, links int
			for _, e := range x.Entries {
				p := filepath.Join(dest, e.Path)
				switch e.Type {
				case TypeFile:
					files++
					data, err := os.ReadFile(p)
					sum := sha256.Sum256(data)
					if err != nil || hex.EncodeToString(sum[:]) != e.SHA256 || int64(len(data)) != e.Size {
						t.Errorf("%s: %v, checksum %s", e.Path, err, e.SHA256)
					}
				case TypeSymlink:
					links++
					if got, err := os.Readlink(p); err != nil || got != e.Target {
						t.Errorf("%s -> %q, recorded %q (%v)", e.Path, got, e.Target, err)
					}
				}
			}
			if files != 4 || links != 3 {
				t.Errorf("%d files, %d links: %+v", files, links, x.Entries)
			}
			if data, err := os.ReadFile(filepath.Join(dest, "share/defaults/kata-containers/configuration.toml")); err != nil || !strings.Contains(string(data), "qemu") {
				t.Errorf("configuration.toml through its link: %q %v", data, err)
			}
			// An absolute link inside /opt/kata becomes relative: the same link at /opt/kata.
			if got, _ := os.Readlink(filepath.Join(dest, "bin/kata-runtime-abs")); got != "containerd-shim-kata-v2" {
				t.Errorf("absolute link rewritten to %q", got)
			}
			fi, err := os.Stat(filepath.Join(dest, ShimPath))
			if err != nil || fi.Mode()&os.ModeSetuid != 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("shim mode %v (setuid must be dropped)", fi.Mode())
			}
		})
	}
}

func TestExtractRefusesMaliciousArchives(t *testing.T) {
	base := release()
	with := func(extra ...item) []item { return append(slices.Clone(base), extra...) }
	small := Limits{MaxEntries: 40, MaxFileSize: 64, MaxTotalSize: 200, MaxPathLen: 120}
	tests := []struct {
		name  string
		items []item
		lim   Limits
		want  string
	}{
		{"dot-dot", with(file("./opt/kata/../../etc/cron.d/evil", "x")), DefaultLimits(), `".." component`},
		{"leading dot-dot", with(file("../evil", "x")), DefaultLimits(), `".." component`},
		{"absolute", with(file("/etc/passwd", "x")), DefaultLimits(), "absolute"},
		{"outside opt/kata", with(file("./etc/passwd", "x")), DefaultLimits(), "outside opt/kata"},
		{"sibling of opt/kata", with(file("./opt/kata-evil/x", "x")), DefaultLimits(), "outside opt/kata"},
		{"symlink up and out", with(link("./opt/kata/bin/etc", "../../../etc")), DefaultLimits(), "outside /opt/kata"},
		{"absolute symlink out", with(link("./opt/kata/bin/shadow", "/etc/shadow")), DefaultLimits(), "outside /opt/kata"},
		{"absolute symlink to a sibling", with(link("./opt/kata/bin/x", "/opt/kata-other/x")), DefaultLimits(), "outside /opt/kata"},
		{"symlink chain escape", with(dir("./opt/kata/d1/"), dir("./opt/kata/d1/d2/"), link("./opt/kata/d1/d2/up", "../.."),
			link("./opt/kata/d1/d2/esc", "up/../..")), DefaultLimits(), "resolves outside"},
		{"write through a symlink", with(link("./opt/kata/lnk", "share"), file("./opt/kata/lnk/x", "x")), DefaultLimits(), "is a symlink"},
		{"symlink to outside then write through it", with(link("./opt/kata/tmp", "/tmp"), file("./opt/kata/tmp/x", "x")), DefaultLimits(), "outside /opt/kata"},
		{"hard link out", with(item{name: "./opt/kata/bin/passwd", link: "/etc/passwd", typ: tar.TypeLink}), DefaultLimits(), "hard link"},
		{"hard link inside", with(item{name: "./opt/kata/bin/shim2", link: "opt/kata/bin/containerd-shim-kata-v2", typ: tar.TypeLink}), DefaultLimits(), "hard link"},
		{"device", with(item{name: "./opt/kata/bin/mem", typ: tar.TypeChar, mode: 0o600}), DefaultLimits(), "only regular files"},
		{"fifo", with(item{name: "./opt/kata/fifo", typ: tar.TypeFifo, mode: 0o600}), DefaultLimits(), "only regular files"},
		{"opt/kata is a symlink", append([]item{link("./opt/kata", "/etc")}, base[3:]...), DefaultLimits(), "must be a directory"},
		{"duplicate", with(file("./opt/kata/VERSION", "4.0.0\n")), DefaultLimits(), "second entry"},
		{"file too big", with(file("./opt/kata/big", strings.Repeat("x", 65))), small, "limit of 64"},
		{"too much in total", with(file("./opt/kata/a", strings.Repeat("a", 60)), file("./opt/kata/b", strings.Repeat("b", 60)),
			file("./opt/kata/c", strings.Repeat("c", 60))), small, "more than 200 bytes"},
		{"too many entries", with(dir("./opt/kata/1/"), dir("./opt/kata/2/"), dir("./opt/kata/3/")), Limits{MaxEntries: 16, MaxFileSize: 1 << 20, MaxTotalSize: 1 << 20, MaxPathLen: 200}, "more than 16 entries"},
		{"long name", with(file("./opt/kata/"+strings.Repeat("n", 130), "x")), small, "longer than 120"},
		{"no shim", slices.DeleteFunc(slices.Clone(base), func(i item) bool { return strings.HasSuffix(i.name, "shim-kata-v2") }), DefaultLimits(), "is it a Kata Containers static release"},
		{"shim is a dangling link", append(slices.DeleteFunc(slices.Clone(base), func(i item) bool { return strings.HasSuffix(i.name, "shim-kata-v2") }),
			link("./opt/kata/bin/containerd-shim-kata-v2", "nowhere")), DefaultLimits(), "is it a Kata Containers static release"},
	}
	for _, tt := range tests {
		for _, comp := range []string{"xz", "zst"} {
			t.Run(tt.name+"/"+comp, func(t *testing.T) {
				work := t.TempDir()
				tb := compressed(t, work, "kata-static-3.18.0-amd64.tar."+comp, comp, tarball(t, tt.items))
				dest := filepath.Join(work, "sub", "kata")
				if err := os.Mkdir(filepath.Dir(dest), 0o755); err != nil {
					t.Fatal(err)
				}
				_, err := Extract(context.Background(), tb, dest, tt.lim)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				// Nothing was written beside the destination, whatever the archive said.
				entries, _ := os.ReadDir(work)
				sub, _ := os.ReadDir(filepath.Dir(dest))
				if len(entries) != 2 || len(sub) > 1 {
					t.Errorf("written outside the destination: %v %v", entries, sub)
				}
				if _, err := os.Lstat("/etc/cron.d/evil"); err == nil {
					t.Fatal("/etc/cron.d/evil exists")
				}
			})
		}
	}
}

func TestExtractRefusesBadFiles(t *testing.T) {
	work := t.TempDir()
	plain := compressed(t, work, "kata-static-3.18.0-amd64.tar.xz", "", tarball(t, release()))
	if _, err := Extract(context.Background(), plain, filepath.Join(work, "a"), DefaultLimits()); err == nil || !strings.Contains(err.Error(), "not xz or zstd") {
		t.Errorf("an uncompressed tar: %v", err)
	}
	full := tarball(t, release())
	cut := compressed(t, work, "kata-static-3.18.0-amd64.tar.zst", "zst", full[:len(full)/2])
	if _, err := Extract(context.Background(), cut, filepath.Join(work, "b"), DefaultLimits()); err == nil {
		t.Error("a truncated archive was accepted")
	}
	good := compressed(t, work, "kata-static-3.18.0-amd64.tar.xz", "xz", full)
	must := filepath.Join(work, "exists")
	if err := os.Mkdir(must, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(context.Background(), good, must, DefaultLimits()); err == nil {
		t.Error("extracted into an existing directory")
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name    string
		want    Release
		wantErr bool
	}{
		{"kata-static-3.18.0-amd64.tar.xz", Release{Version: "3.18.0", Arch: "amd64", Compression: "xz"}, false},
		{"/tmp/kata-static-3.2.0-rc0-x86_64.tar.zst", Release{Version: "3.2.0-rc0", Arch: "x86_64", Compression: "zst"}, false},
		{"kata-go-static-4.1.0-amd64.tar.zst", Release{Go: true, Version: "4.1.0", Arch: "amd64", Compression: "zst"}, false},
		{"kata-static-3.18.0-arm64.tar.xz", Release{Version: "3.18.0", Arch: "arm64", Compression: "xz"}, false},
		{"kata-static-3.18.0-amd64.tar.gz", Release{}, true},
		{"kata-containers.tar.xz", Release{}, true},
	}
	for _, tt := range tests {
		got, err := ParseName(tt.name)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: %+v, %v", tt.name, got, err)
		}
	}
	if err := (Release{Arch: "x86_64"}).CheckArch("amd64"); err != nil {
		t.Error(err)
	}
	if err := (Release{Arch: "arm64"}).CheckArch("amd64"); err == nil || !strings.Contains(err.Error(), "download the amd64") {
		t.Errorf("arm64 on amd64: %v", err)
	}
}

// Directories the archive does not list are made and reported, so that they are removed again;
// listed later, they are not reported twice.
func TestExtractImplicitDirectories(t *testing.T) {
	work := t.TempDir()
	items := []item{
		file("opt/kata/bin/containerd-shim-kata-v2", "shim"),
		file("opt/kata/share/defaults/kata-containers/configuration-qemu.toml", "cfg"),
		dir("opt/kata/share/"),
	}
	tb := compressed(t, work, "kata-go-static-4.1.0-amd64.tar.zst", "zst", tarball(t, items))
	x, err := Extract(context.Background(), tb, filepath.Join(work, "kata"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range x.Entries {
		if e.Type == TypeDir {
			dirs = append(dirs, e.Path)
		}
	}
	want := []string{"bin", "share", "share/defaults", "share/defaults/kata-containers"}
	if !slices.Equal(dirs, want) {
		t.Errorf("directories %v, want %v (parents first, once each)", dirs, want)
	}
}
