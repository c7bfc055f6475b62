package upstream

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Limits bound what a tarball may hold.
type Limits struct {
	MaxEntries   int
	MaxFileSize  int64 // one file
	MaxTotalSize int64 // all files
	MaxPathLen   int
}

// DefaultLimits fit the largest releases (about 1.5 GiB unpacked, a few thousand entries) with room.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 100000, MaxFileSize: 4 << 30, MaxTotalSize: 16 << 30, MaxPathLen: 1024}
}

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Entry is one extracted item.
type Entry struct {
	// Path is relative to the release's directory ("bin/containerd-shim-kata-v2"); "" is the
	// directory itself.
	Path string
	Type string
	Mode fs.FileMode
	Size int64
	// SHA256 is a file's checksum.
	SHA256 string
	// Target is a symlink's target, always relative (an absolute one inside /opt/kata is
	// rewritten relative, which is the same link where upstream expects the release).
	Target string
}

// Extracted is what Extract wrote.
type Extracted struct {
	Entries []Entry
	// Version is the release's VERSION file, when it has one.
	Version string
}

// magic numbers of the compressions.
var (
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// maxDecoderMemory bounds zstd's window: releases are compressed with the default window.
const maxDecoderMemory = 1 << 30

// Extract validates the tarball and extracts its opt/kata/ into dir, which must not exist (it is
// created, mode 0755). Nothing is written outside dir; on error dir holds a partial extraction the
// caller removes.
func Extract(ctx context.Context, tarball, dir string, lim Limits) (*Extracted, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, closeFn, err := decompress(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tarball, err)
	}
	defer closeFn()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	x := &extractor{ctx: ctx, root: root, lim: lim, seen: map[string]Entry{"": {Type: TypeDir}}, implicit: map[string]bool{}}
	if err := x.run(tar.NewReader(r)); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(tarball), err)
	}
	if err := x.checkSymlinks(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(tarball), err)
	}
	for _, required := range []string{ShimPath, ConfigPath} {
		if e, err := x.resolve(required); err != nil || e == nil || e.Type != TypeFile {
			return nil, fmt.Errorf("%s has no %s/%s: is it a Kata Containers static release?", filepath.Base(tarball), Root, required)
		}
	}
	return &Extracted{Entries: x.entries, Version: x.version}, nil
}

func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	head, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(head, xzMagic):
		r, err := xz.NewReader(br)
		return r, func() {}, err
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(maxDecoderMemory))
		if err != nil {
			return nil, nil, err
		}
		return d, d.Close, nil
	}
	return nil, nil, errors.New("not xz or zstd compressed (a release is .tar.xz or .tar.zst)")
}

type extractor struct {
	ctx      context.Context
	root     *os.Root
	lim      Limits
	seen     map[string]Entry
	implicit map[string]bool // directories made for an entry inside them, not (yet) listed
	entries  []Entry
	total    int64
	version  string
}

func (x *extractor) run(tr *tar.Reader) error {
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if n >= x.lim.MaxEntries {
			return fmt.Errorf("more than %d entries", x.lim.MaxEntries)
		}
		rel, skip, err := x.name(hdr.Name)
		switch {
		case err != nil:
			return err
		case (skip || rel == "") && hdr.Typeflag != tar.TypeDir:
			return fmt.Errorf("entry %q: must be a directory", hdr.Name)
		case skip:
			continue
		}
		if err := x.entry(hdr, rel, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// name validates an entry's name and returns its path under opt/kata/; skip for the directories
// above it ("./", "opt/").
func (x *extractor) name(raw string) (string, bool, error) {
	if len(raw) > x.lim.MaxPathLen {
		return "", false, fmt.Errorf("entry name longer than %d bytes", x.lim.MaxPathLen)
	}
	if raw == "" || strings.ContainsRune(raw, 0) {
		return "", false, fmt.Errorf("entry %q: empty or NUL in its name", raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", false, fmt.Errorf("entry %q: an absolute path", raw)
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", false, fmt.Errorf("entry %q: a \"..\" component", raw)
		}
	}
	clean := path.Clean(strings.TrimPrefix(raw, "./"))
	switch {
	case clean == "." || clean == "opt":
		return "", true, nil
	case clean == Root:
		return "", false, nil
	case strings.HasPrefix(clean, Root+"/"):
		return strings.TrimPrefix(clean, Root+"/"), false, nil
	}
	return "", false, fmt.Errorf("entry %q is outside %s/: a release holds only %s/", raw, Root, Root)
}

// entry extracts one validated entry.
func (x *extractor) entry(hdr *tar.Header, rel string, r io.Reader) error {
	if prev, ok := x.seen[rel]; ok && !(hdr.Typeflag == tar.TypeDir && prev.Type == TypeDir && (rel == "" || x.implicit[rel])) {
		return errors.New("a second entry with this name")
	}
	if err := x.checkParents(rel); err != nil {
		return err
	}
	mode := fs.FileMode(hdr.Mode).Perm() &^ 0o022 // no setuid, no writing by others
	e := Entry{Path: rel, Mode: mode}
	var err error
	switch hdr.Typeflag {
	case tar.TypeDir:
		e.Type = TypeDir
		if rel != "" && !x.implicit[rel] {
			err = x.root.Mkdir(rel, 0o755)
		}
	case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
		e.Type = TypeFile
		err = x.file(&e, hdr.Size, r)
	case tar.TypeSymlink:
		e.Type = TypeSymlink
		if e.Target, err = x.linkTarget(rel, hdr.Linkname); err == nil {
			err = x.symlink(rel, e.Target)
		}
	case tar.TypeLink:
		return fmt.Errorf("a hard link (to %q): not allowed in a release kata-deploy installs", hdr.Linkname)
	default:
		return fmt.Errorf("type %q: only regular files, directories and symlinks are allowed", string(hdr.Typeflag))
	}
	if err != nil {
		return err
	}
	if rel == "VERSION" && e.Type == TypeFile {
		if data, err := x.root.ReadFile(rel); err == nil {
			x.version = strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0])
		}
	}
	if rel == "" {
		return nil
	}
	if x.implicit[rel] {
		delete(x.implicit, rel) // its directory was made for an earlier entry: it is recorded already
		return nil
	}
	x.add(e)
	return nil
}

func (x *extractor) add(e Entry) {
	x.entries = append(x.entries, e)
	x.seen[e.Path] = e
}

// checkParents refuses an entry whose directory is (or goes through) a symlink of the release:
// writing through it is how an archive escapes.
func (x *extractor) checkParents(rel string) error {
	for dir := path.Dir(rel); dir != "." && dir != ""; dir = path.Dir(dir) {
		if e, ok := x.seen[dir]; ok && e.Type != TypeDir {
			return fmt.Errorf("its directory %s/%s is a %s, not a directory", Root, dir, e.Type)
		}
	}
	var missing []string
	for dir := path.Dir(rel); rel != "" && dir != "."; dir = path.Dir(dir) {
		if _, ok := x.seen[dir]; !ok {
			missing = append(missing, dir)
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		// A directory the archive did not list is made, and recorded, so that it is removed again.
		if err := x.root.Mkdir(missing[i], 0o755); err != nil {
			return err
		}
		x.implicit[missing[i]] = true
		x.add(Entry{Path: missing[i], Type: TypeDir, Mode: 0o755})
	}
	return nil
}

func (x *extractor) file(e *Entry, size int64, r io.Reader) error {
	if size < 0 || size > x.lim.MaxFileSize {
		return fmt.Errorf("%d bytes, more than the limit of %d for one file", size, x.lim.MaxFileSize)
	}
	if x.total += size; x.total > x.lim.MaxTotalSize {
		return fmt.Errorf("the release unpacks to more than %d bytes", x.lim.MaxTotalSize)
	}
	f, err := x.root.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.Mode)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("truncated: %d of %d bytes", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	e.Size, e.SHA256 = size, hex.EncodeToString(h.Sum(nil))
	return err
}

// linkTarget validates a symlink's target lexically and makes an absolute one relative. Where it
// finally resolves, through other symlinks, is checked once every entry is known.
func (x *extractor) linkTarget(rel, target string) (string, error) {
	if target == "" || strings.ContainsRune(target, 0) || len(target) > x.lim.MaxPathLen {
		return "", fmt.Errorf("symlink with an empty, too long or NUL-holding target")
	}
	if path.IsAbs(target) {
		inside, ok := strings.CutPrefix(path.Clean(target), DefaultDir)
		if !ok || (inside != "" && !strings.HasPrefix(inside, "/")) {
			return "", fmt.Errorf("symlink to %s, outside %s", target, DefaultDir)
		}
		r, err := filepath.Rel(path.Dir("/"+rel), "/"+strings.TrimPrefix(inside, "/"))
		if err != nil {
			return "", err
		}
		target = filepath.ToSlash(r)
	}
	if p := path.Join(path.Dir(rel), target); p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("symlink to %s, outside %s", target, DefaultDir)
	}
	return target, nil
}

func (x *extractor) symlink(rel, target string) error {
	return x.root.Symlink(target, rel)
}

// checkSymlinks resolves every symlink through the others, as the kernel would, and refuses one
// that ends up outside the release: "a -> b/../.." is harmless lexically when b is a directory,
// but not when b is itself a link to a deeper directory.
func (x *extractor) checkSymlinks() error {
	for _, e := range x.entries {
		if e.Type != TypeSymlink {
			continue
		}
		if _, err := x.resolve(e.Path); err != nil {
			return fmt.Errorf("symlink %s/%s -> %s: %w", Root, e.Path, e.Target, err)
		}
	}
	return nil
}

// resolve follows p (relative to the release) through the release's symlinks, returning the entry
// it lands on (nil when it does not exist: a dangling link is allowed) or an error when it leaves
// the release.
func (x *extractor) resolve(p string) (*Entry, error) {
	pending := strings.Split(p, "/")
	var cur []string
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, fmt.Errorf("resolves outside %s", DefaultDir)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, c)
		e, ok := x.seen[strings.Join(cur, "/")]
		if !ok {
			if len(pending) == 0 {
				return nil, nil
			}
			continue // a missing directory: the rest stays inside as long as no ".." climbs out
		}
		if e.Type != TypeSymlink {
			if len(pending) == 0 {
				return &e, nil
			}
			continue
		}
		if hops++; hops > 40 {
			return nil, errors.New("too many levels of symlinks")
		}
		cur = cur[:len(cur)-1]
		pending = append(strings.Split(e.Target, "/"), pending...)
	}
	if e, ok := x.seen[strings.Join(cur, "/")]; ok {
		return &e, nil
	}
	return nil, nil
}
