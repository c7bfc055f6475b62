package guestimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// maxModuleSize bounds a decompressed module; the largest in-tree modules
// are a few tens of megabytes.
const maxModuleSize = 256 << 20

// validModuleName reports whether s, with '-' already folded to '_' (the
// kernel treats both the same), is a plausible module name. Names become
// file names in the initrd, so nothing else is let through.
func validModuleName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// modinfo is the parsed .modinfo section of a kernel module.
type modinfo struct {
	name     string
	depends  []string
	vermagic string
}

// ModuleDeps returns the modules that a kernel module (an uncompressed .ko
// file) needs loaded first, as listed in its .modinfo "depends=" entry.
func ModuleDeps(ko []byte) ([]string, error) {
	mi, err := parseModinfo(ko)
	if err != nil {
		return nil, err
	}
	return mi.depends, nil
}

func parseModinfo(ko []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return modinfo{}, fmt.Errorf("not an ELF kernel module: %w", err)
	}
	return modinfoFromELF(f)
}

func modinfoFromELF(f *elf.File) (modinfo, error) {
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, errors.New("ELF file has no .modinfo section: not a kernel module")
	}
	data, err := sec.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfoSection(data)
}

// parseModinfoSection reads the NUL-separated key=value strings.
func parseModinfoSection(data []byte) (modinfo, error) {
	var mi modinfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "name":
			mi.name = canonicalModuleName(value)
		case "vermagic":
			mi.vermagic = value
		case "depends":
			deps, err := splitDepends(value)
			if err != nil {
				return modinfo{}, err
			}
			mi.depends = deps
		}
	}
	return mi, nil
}

func splitDepends(value string) ([]string, error) {
	var deps []string
	for d := range strings.SplitSeq(value, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		d = canonicalModuleName(d)
		if !validModuleName(d) {
			return nil, fmt.Errorf("module lists an invalid dependency name %q", d)
		}
		deps = append(deps, d)
	}
	return deps, nil
}

// canonicalModuleName folds '-' to '_' as the kernel does.
func canonicalModuleName(s string) string {
	return strings.ReplaceAll(s, "-", "_")
}

// moduleFileSuffixes are the file name endings of loadable modules, plain or
// compressed (CONFIG_MODULE_COMPRESS_*).
func moduleFileSuffixes() []string {
	return []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}
}

// moduleNameFromPath returns the module name a file name implies, or ""
// when the file is not a module.
func moduleNameFromPath(p string) string {
	base := path.Base(p)
	for _, s := range moduleFileSuffixes() {
		if strings.HasSuffix(base, s) {
			return canonicalModuleName(strings.TrimSuffix(base, s))
		}
	}
	return ""
}

// decompressModule returns the plain ELF of a module file, decompressing
// .ko.xz/.ko.zst/.ko.gz by their suffix.
func decompressModule(name string, data []byte) ([]byte, error) {
	var r io.Reader
	src := bytes.NewReader(data)
	switch {
	case strings.HasSuffix(name, ".ko"):
		return data, nil
	case strings.HasSuffix(name, ".ko.xz"):
		out, err := decodeXZ(data, maxModuleSize)
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", name, err)
		}
		return out, nil
	case strings.HasSuffix(name, ".ko.zst"):
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(name, ".ko.gz"):
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r = zr
	default:
		return nil, fmt.Errorf("%s: not a kernel module file (want .ko, .ko.xz, .ko.zst or .ko.gz)", name)
	}
	out, err := readLimited(r, maxModuleSize)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	return out, nil
}
