package guestimage

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// A .deb is an ar archive: the global magic, then members with a 60-byte
// ASCII header each (name, mtime, uid, gid, mode, size, "`\n"), data
// padded to an even length. dpkg only ever writes these simple names.
const (
	arMagic      = "!<arch>\n"
	arHeaderSize = 60
)

// maxKernelImage bounds the vmlinuz read from a package.
const maxKernelImage = 256 << 20

type arMember struct {
	name string
	size int64
}

func readArHeader(r io.Reader) (arMember, error) {
	var h [arHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return arMember{}, io.EOF
		}
		return arMember{}, fmt.Errorf("truncated ar member header: %w", err)
	}
	if string(h[58:60]) != "`\n" {
		return arMember{}, errors.New("corrupt ar member header (bad terminator)")
	}
	name := strings.TrimRight(strings.TrimSpace(string(h[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
	if err != nil || size < 0 {
		return arMember{}, fmt.Errorf("corrupt ar member header: size %q", h[48:58])
	}
	return arMember{name: name, size: size}, nil
}

// debDataTar positions r at the package's data.tar.* member and returns a
// reader of the uncompressed tar stream.
func debDataTar(r io.Reader) (io.Reader, func(), error) {
	var magic [len(arMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != arMagic {
		return nil, nil, errors.New("not a Debian package (no ar archive header)")
	}
	for {
		m, err := readArHeader(r)
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.New("the Debian package has no data.tar member")
		}
		if err != nil {
			return nil, nil, err
		}
		if strings.HasPrefix(m.name, "data.tar") {
			return tarDecompressor(m.name, io.LimitReader(r, m.size))
		}
		if _, err := io.CopyN(io.Discard, r, m.size+m.size%2); err != nil {
			return nil, nil, fmt.Errorf("skip ar member %s: %w", m.name, err)
		}
	}
}

func tarDecompressor(name string, r io.Reader) (io.Reader, func(), error) {
	noop := func() {}
	switch strings.TrimPrefix(name, "data.tar") {
	case "":
		return r, noop, nil
	case ".xz":
		zr, err := xz.NewReader(r)
		return zr, noop, err
	case ".zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case ".gz":
		zr, err := gzip.NewReader(r)
		return zr, noop, err
	case ".bz2":
		return bzip2.NewReader(r), noop, nil
	default:
		return nil, nil, fmt.Errorf("package member %s uses an unsupported compression", name)
	}
}

// walkDeb calls visit for each regular file in a package's data archive,
// with its path relative to / (no leading "./").
func walkDeb(ctx context.Context, debPath string, visit func(name string, r io.Reader) error) error {
	f, err := os.Open(debPath)
	if err != nil {
		return fmt.Errorf("open kernel package: %w", err)
	}
	defer f.Close()
	data, closeFn, err := debDataTar(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", debPath, err)
	}
	defer closeFn()
	tr := tar.NewReader(data)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: read data archive: %w", debPath, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := visit(debRelPath(hdr.Name), tr); err != nil {
			return fmt.Errorf("%s: %s: %w", debPath, hdr.Name, err)
		}
	}
}

// debRelPath strips "./" and, for merged-/usr packages, the "usr/" in
// front of lib/modules, so both layouts look alike.
func debRelPath(name string) string {
	name = strings.TrimLeft(strings.TrimPrefix(name, "./"), "/")
	if strings.HasPrefix(name, "usr/lib/modules/") {
		name = strings.TrimPrefix(name, "usr/")
	}
	return name
}

// debKernel is what a kernel package yields.
type debKernel struct {
	version string
	vmlinuz []byte
	tree    *moduleTree
	modules []Module // resolved, in load order
	assumed []string // wanted modules taken to be built in, unverified
}

// debScan collects a kernel package's vmlinuz, module metadata and the
// bytes of the modules that keep() asks for.
type debScan struct {
	k        *debKernel
	versions map[string]bool
	keep     func(m *Module) bool
}

func (s *debScan) visit(name string, r io.Reader) error {
	switch {
	case strings.HasPrefix(name, "boot/vmlinuz-"):
		b, err := readLimited(r, maxKernelImage)
		if err != nil {
			return err
		}
		s.k.vmlinuz = b
		s.versions[strings.TrimPrefix(name, "boot/vmlinuz-")] = true
	case strings.HasPrefix(name, "lib/modules/"):
		return s.visitModuleFile(name, r)
	}
	return nil
}

func (s *debScan) visitModuleFile(name string, r io.Reader) error {
	rest := strings.TrimPrefix(name, "lib/modules/")
	version, file, ok := strings.Cut(rest, "/")
	if !ok {
		return nil
	}
	s.versions[version] = true
	if file == "modules.builtin" {
		set, err := parseBuiltin(r)
		s.k.tree.builtin = set
		return err
	}
	if moduleNameFromPath(file) == "" {
		return nil
	}
	raw, err := readLimited(r, maxModuleSize)
	if err != nil {
		return err
	}
	m, err := moduleFromBytes("/"+name, raw, true)
	if err != nil {
		return err
	}
	if !s.keep(m) {
		m.Data = nil
	}
	s.k.tree.add(m)
	return nil
}

// readKernelDeb reads a Debian/Ubuntu kernel image package and resolves
// want against its modules. Module bytes are kept only for modules that
// look needed while streaming; if a dependency went by before the module
// needing it, a second pass fetches just the missing ones.
func readKernelDeb(ctx context.Context, debPath string, want []string, progress func(string)) (*debKernel, error) {
	k := &debKernel{tree: newModuleTree()}
	needed := map[string]bool{}
	for _, n := range slices.Concat(want, likelyHelpers()) {
		needed[canonicalModuleName(n)] = true
	}
	scan := &debScan{k: k, versions: map[string]bool{}, keep: func(m *Module) bool {
		if !needed[m.Name] {
			return false
		}
		for _, d := range m.Depends {
			needed[d] = true
		}
		return true
	}}
	if err := walkDeb(ctx, debPath, scan.visit); err != nil {
		return nil, err
	}
	if err := k.check(debPath, scan.versions); err != nil {
		return nil, err
	}
	order, assumed, err := k.tree.loadOrder(want)
	if err != nil {
		return nil, err
	}
	if err := k.fetchMissing(ctx, debPath, order, progress); err != nil {
		return nil, err
	}
	k.modules = make([]Module, len(order))
	for i, name := range order {
		k.modules[i] = *k.tree.mods[name]
	}
	k.assumed = assumed
	return k, nil
}

// check validates what the scan found and settles the kernel version.
func (k *debKernel) check(debPath string, versions map[string]bool) error {
	if k.vmlinuz == nil {
		return fmt.Errorf("%s contains no /boot/vmlinuz-*: pass a linux-image-* kernel package", debPath)
	}
	if len(k.tree.mods) == 0 {
		return fmt.Errorf("%s contains no kernel modules: on Ubuntu they ship separately in linux-modules-*; use --vmlinuz and --modules-dir from an installed kernel instead", debPath)
	}
	if len(versions) != 1 {
		vs := make([]string, 0, len(versions))
		for v := range versions {
			vs = append(vs, v)
		}
		return fmt.Errorf("%s holds files for several kernel versions %v: pass a package with exactly one kernel", debPath, vs)
	}
	for v := range versions {
		k.version = v
	}
	return nil
}

// fetchMissing rereads the package for modules in order whose bytes the
// first pass did not keep.
func (k *debKernel) fetchMissing(ctx context.Context, debPath string, order []string, progress func(string)) error {
	missing := map[string]bool{}
	for _, name := range order {
		if k.tree.mods[name].Data == nil {
			missing[name] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	progress(fmt.Sprintf("rereading %s for %d module(s)", debPath, len(missing)))
	scan := &debScan{k: k, versions: map[string]bool{}, keep: func(m *Module) bool { return missing[m.Name] }}
	if err := walkDeb(ctx, debPath, scan.visit); err != nil {
		return err
	}
	for name := range missing {
		if k.tree.mods[name].Data == nil {
			return fmt.Errorf("%s: module %s disappeared on the second read", debPath, name)
		}
	}
	return nil
}
