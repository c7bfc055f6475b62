// Package upstreamtest builds small synthetic Kata Containers release tarballs for tests: there
// is no network to fetch a real one, and a malicious one has to be made anyway.
package upstreamtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Item is one entry of a tarball.
type Item struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
}

// File, Dir, Symlink and Hardlink make items.
func File(name, body string) Item {
	return Item{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o644}
}
func Exec(name, body string) Item {
	return Item{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o755}
}
func Dir(name string) Item { return Item{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func Symlink(name, target string) Item {
	return Item{Name: name, Link: target, Type: tar.TypeSymlink, Mode: 0o777}
}
func Hardlink(name, target string) Item { return Item{Name: name, Link: target, Type: tar.TypeLink} }

// Release is a small valid release as upstream lays it out under ./opt/kata/: a shim (a shell
// script), the QEMU configuration and its configuration.toml link, a kernel and its link, VERSION.
func Release(version string) []Item {
	return []Item{
		Dir("./"), Dir("./opt/"), Dir("./opt/kata/"), Dir("./opt/kata/bin/"),
		Exec("./opt/kata/bin/containerd-shim-kata-v2", "#!/bin/sh\n# Kata Containers "+version+" (a test stand-in)\nexit 1\n"),
		File("./opt/kata/VERSION", version+"\n"),
		Dir("./opt/kata/share/"), Dir("./opt/kata/share/defaults/"), Dir("./opt/kata/share/defaults/kata-containers/"),
		File("./opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
			"[hypervisor.qemu]\npath = \"/opt/kata/bin/qemu-system-x86_64\"\nkernel = \"/opt/kata/share/kata-containers/vmlinux.container\"\n"),
		Symlink("./opt/kata/share/defaults/kata-containers/configuration.toml", "configuration-qemu.toml"),
		Dir("./opt/kata/share/kata-containers/"),
		File("./opt/kata/share/kata-containers/vmlinux-6.12.28-153", "not a kernel"),
		Symlink("./opt/kata/share/kata-containers/vmlinux.container", "vmlinux-6.12.28-153"),
	}
}

// Write writes items as a tar compressed with comp ("xz" or "zst") to dir/name.
func Write(dir, name, comp string, items []Item) (string, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, it := range items {
		h := &tar.Header{Name: it.Name, Typeflag: it.Type, Mode: it.Mode, Linkname: it.Link, Format: tar.FormatPAX}
		if it.Type == tar.TypeReg {
			h.Size = int64(len(it.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return "", err
		}
		if _, err := tw.Write([]byte(it.Body)); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	var out bytes.Buffer
	switch comp {
	case "xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			return "", err
		}
		if _, err := w.Write(raw.Bytes()); err != nil {
			return "", err
		}
		if err := w.Close(); err != nil {
			return "", err
		}
	case "zst":
		w, err := zstd.NewWriter(&out)
		if err != nil {
			return "", err
		}
		if _, err := w.Write(raw.Bytes()); err != nil {
			return "", err
		}
		if err := w.Close(); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("compression %q: xz or zst", comp)
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, out.Bytes(), 0o644)
}
