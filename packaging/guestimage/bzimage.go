package guestimage

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
)

// Offsets into the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst in the kernel tree).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offBootVersion   = 0x206
	offKernelVersion = 0x20e
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	setupHeaderEnd   = 0x250

	// payload_offset/payload_length exist from boot protocol 2.08 on.
	minBootVersion = 0x0208

	// maxVmlinuxSize bounds decompression so that a corrupt or hostile
	// image cannot exhaust memory; real kernels are well below it.
	maxVmlinuxSize = 1 << 30

	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH
	// entry point QEMU jumps to when it loads an ELF kernel directly.
	xenElfnotePhys32Entry = 18
)

// compression names a payload format recognised by its magic bytes.
type compression struct {
	name  string
	magic []byte
}

func compressions() []compression {
	return []compression{
		{"gzip", []byte{0x1f, 0x8b}},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
		{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}}, // legacy frame, as the kernel writes it
		{"bzip2", []byte{'B', 'Z', 'h'}},
		{"lzma", []byte{0x5d, 0x00, 0x00}},
		{"lzo", []byte{0x89, 'L', 'Z', 'O'}},
	}
}

func detectCompression(payload []byte) (string, error) {
	for _, c := range compressions() {
		if bytes.HasPrefix(payload, c.magic) {
			return c.name, nil
		}
	}
	n := min(len(payload), 8)
	return "", fmt.Errorf("unknown kernel payload compression (first bytes % x): expected gzip, xz, zstd, lz4, bzip2 or lzma", payload[:n])
}

// ExtractVmlinux returns the uncompressed ELF kernel inside an x86 bzImage.
// QEMU boots such an ELF through its PVH entry point without running the
// kernel's own decompressor, which is what makes guest boot fast.
func ExtractVmlinux(bzImage []byte) ([]byte, error) {
	payload, err := bzImagePayload(bzImage)
	if err != nil {
		return nil, err
	}
	kind, err := detectCompression(payload)
	if err != nil {
		return nil, err
	}
	raw, err := decompressPayload(kind, payload)
	if err != nil {
		return nil, fmt.Errorf("decompress %s kernel payload: %w", kind, err)
	}
	if err := checkPayloadSize(kind, payload, raw); err != nil {
		return nil, err
	}
	return validateVmlinux(raw)
}

// bzImagePayload locates the compressed kernel using the setup header.
func bzImagePayload(img []byte) ([]byte, error) {
	if len(img) < setupHeaderEnd || string(img[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage (no \"HdrS\" setup header at 0x202): pass the distro's /boot/vmlinuz-* file")
	}
	if v := binary.LittleEndian.Uint16(img[offBootVersion:]); v < minBootVersion {
		return nil, fmt.Errorf("bzImage uses boot protocol %d.%02d; at least 2.08 is needed to locate the payload", v>>8, v&0xff)
	}
	setupSects := int(img[offSetupSects])
	if setupSects == 0 {
		setupSects = 4 // historical default, see boot.rst
	}
	start := (setupSects + 1) * 512
	off := int64(binary.LittleEndian.Uint32(img[offPayloadOffset:]))
	length := int64(binary.LittleEndian.Uint32(img[offPayloadLength:]))
	begin := int64(start) + off
	if length == 0 || begin+length > int64(len(img)) {
		return nil, fmt.Errorf("bzImage payload [%d, %d) lies outside the %d-byte file: the image is truncated or corrupt", begin, begin+length, len(img))
	}
	return img[begin : begin+length], nil
}

// KernelVersion returns the release string (as `uname -r` prints it) that a
// bzImage's setup header points to.
func KernelVersion(bzImage []byte) (string, error) {
	if len(bzImage) < setupHeaderEnd || string(bzImage[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return "", errors.New("not an x86 bzImage (no \"HdrS\" setup header)")
	}
	ptr := int(binary.LittleEndian.Uint16(bzImage[offKernelVersion:]))
	if ptr == 0 {
		return "", errors.New("bzImage carries no kernel version string")
	}
	at := ptr + 0x200
	if at >= len(bzImage) {
		return "", errors.New("bzImage kernel version pointer is outside the file")
	}
	s := bzImage[at:min(len(bzImage), at+256)]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 {
		return "", errors.New("bzImage kernel version string is empty")
	}
	return fields[0], nil
}

// withoutSizeTrailer drops the little-endian uncompressed size that the
// kernel build appends to every payload format except gzip (which carries
// its own ISIZE); the decompressors would take it for trailing garbage.
func withoutSizeTrailer(kind string, payload []byte) []byte {
	if kind == "gzip" || len(payload) < 4 {
		return payload
	}
	return payload[:len(payload)-4]
}

func decompressPayload(kind string, payload []byte) ([]byte, error) {
	body := withoutSizeTrailer(kind, payload)
	if kind == "xz" { // the kernel's xz uses the x86 BCJ filter
		return decodeXZ(body, maxVmlinuxSize)
	}
	r, closeFn, err := payloadReader(kind, body)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	return readLimited(r, maxVmlinuxSize)
}

func payloadReader(kind string, body []byte) (io.Reader, func(), error) {
	src := bytes.NewReader(body)
	noop := func() {}
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, nil, err
		}
		zr.Multistream(false)
		return zr, noop, nil
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxVmlinuxSize))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case "lz4":
		return lz4.NewReader(src), noop, nil
	case "bzip2":
		return bzip2.NewReader(src), noop, nil
	case "lzma":
		zr, err := lzma.NewReader(src)
		return zr, noop, err
	default:
		return nil, nil, fmt.Errorf("%s-compressed kernels are not supported: rebuild the kernel with xz, zstd, gzip or lz4 compression", kind)
	}
}

// readLimited reads all of r, failing rather than growing past limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("decompressed data exceeds %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// checkPayloadSize compares the output with the size the kernel build
// recorded in the payload's last four bytes (gzip's ISIZE or the appended
// size): a mismatch means a truncated or misdetected payload.
func checkPayloadSize(kind string, payload, raw []byte) error {
	if len(payload) < 4 {
		return fmt.Errorf("%s kernel payload is only %d bytes", kind, len(payload))
	}
	want := binary.LittleEndian.Uint32(payload[len(payload)-4:])
	if uint32(len(raw)) != want {
		return fmt.Errorf("%s kernel payload decompressed to %d bytes but the image records %d: the bzImage is corrupt", kind, len(raw), want)
	}
	return nil
}

// validateVmlinux checks that raw is a bootable x86-64 ELF with a PVH entry
// and returns it without whatever follows the ELF (on KASLR kernels the
// payload also carries the relocation table the decompressor applies).
func validateVmlinux(raw []byte) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decompressed kernel is not an ELF file: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("decompressed kernel is %s %s, want ELFCLASS64 x86-64", f.Class, f.Machine)
	}
	ok, err := hasPVHNote(f)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), so QEMU cannot boot its vmlinux directly: use a kernel built with CONFIG_PVH=y (Debian's and Ubuntu's generic kernels are)")
	}
	end, err := elfExtent(f, raw)
	if err != nil {
		return nil, err
	}
	return raw[:end], nil
}

func hasPVHNote(f *elf.File) (bool, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return false, fmt.Errorf("read ELF note segment: %w", err)
		}
		if notesContain(data, f.ByteOrder, "Xen", xenElfnotePhys32Entry) {
			return true, nil
		}
	}
	return false, nil
}

// notesContain walks a note segment: namesz, descsz, type, then the name
// and descriptor, each padded to four bytes.
func notesContain(data []byte, bo binary.ByteOrder, name string, typ uint32) bool {
	for len(data) >= 12 {
		namesz := uint64(bo.Uint32(data[0:]))
		descsz := uint64(bo.Uint32(data[4:]))
		ntype := bo.Uint32(data[8:])
		nameEnd := 12 + align4(namesz)
		descEnd := nameEnd + align4(descsz)
		if descEnd > uint64(len(data)) {
			return false
		}
		n := string(bytes.TrimRight(data[12:12+namesz], "\x00"))
		if n == name && ntype == typ {
			return true
		}
		data = data[descEnd:]
	}
	return false
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// isELF reports whether b starts with the ELF magic.
func isELF(b []byte) bool { return bytes.HasPrefix(b, []byte(elf.ELFMAG)) }

// elfExtent is the end of the last byte any ELF structure refers to.
func elfExtent(f *elf.File, raw []byte) (int, error) {
	bo := f.ByteOrder
	phoff := bo.Uint64(raw[0x20:])
	shoff := bo.Uint64(raw[0x28:])
	phentsize, phnum := uint64(bo.Uint16(raw[0x36:])), uint64(bo.Uint16(raw[0x38:]))
	shentsize, shnum := uint64(bo.Uint16(raw[0x3a:])), uint64(bo.Uint16(raw[0x3c:]))
	end := max(uint64(64), phoff+phentsize*phnum, shoff+shentsize*shnum)
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.FileSize)
		}
	}
	if end > uint64(len(raw)) {
		return 0, fmt.Errorf("kernel ELF refers to byte %d but only %d were decompressed: the image is truncated", end, len(raw))
	}
	return int(end), nil
}
