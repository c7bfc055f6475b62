package guestimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// The kernel compresses its image with `xz --x86 --lzma2` (scripts/xz_wrap.sh):
// an x86 branch-call-jump (BCJ) filter in front of LZMA2 that
// github.com/ulikunitz/xz does not implement. decodeXZ reads such .xz
// streams held in memory: it walks the container itself, lets
// ulikunitz/xz/lzma decode the LZMA2 data, and undoes the BCJ filter.
// Layout (the .xz file format specification, version 1.2):
//
//	stream header: magic(6) flags(2) crc32(4)
//	block*:        header((size+1)*4 bytes) lzma2-data padding(to 4) check
//	index, stream footer (not needed to decode, so not read)

const (
	xzMagic          = "\xfd7zXZ\x00"
	xzFilterX86      = 0x04
	xzFilterLZMA2    = 0x21
	xzIndexIndicator = 0x00
)

// decodeXZ decompresses the first stream of an .xz file held in memory,
// failing beyond limit bytes of output.
func decodeXZ(data []byte, limit int64) ([]byte, error) {
	if len(data) < 12 || string(data[:6]) != xzMagic {
		return nil, errors.New("xz: not an .xz stream")
	}
	if crc32.ChecksumIEEE(data[6:8]) != binary.LittleEndian.Uint32(data[8:12]) || data[6] != 0 {
		return nil, errors.New("xz: corrupt stream header")
	}
	newCheck, checkSize, err := xzCheck(data[7])
	if err != nil {
		return nil, err
	}
	r := bytes.NewReader(data[12:])
	var out []byte
	for {
		first, err := r.ReadByte()
		if err != nil {
			return nil, errors.New("xz: truncated stream (no index)")
		}
		if first == xzIndexIndicator {
			return out, nil
		}
		if err := r.UnreadByte(); err != nil {
			return nil, err
		}
		block, err := decodeXZBlock(r, newCheck, checkSize, limit-int64(len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, block...)
	}
}

// xzCheck maps the stream's check type to a hash and its size.
func xzCheck(kind byte) (func() hash.Hash, int, error) {
	switch kind {
	case 0x00:
		return nil, 0, nil
	case 0x01:
		return func() hash.Hash { return crc32.NewIEEE() }, 4, nil
	case 0x04:
		return func() hash.Hash { return crc64.New(crc64.MakeTable(crc64.ECMA)) }, 8, nil
	case 0x0a:
		return sha256.New, 32, nil
	default:
		return nil, 0, fmt.Errorf("xz: unsupported check type %#x", kind)
	}
}

// xzBlockHeader is the part of a block header decoding needs.
type xzBlockHeader struct {
	uncompressedSize int64 // -1 when absent
	dictCap          int
	x86              bool   // BCJ x86 filter present
	x86Start         uint32 // its start offset
}

func decodeXZBlock(r *bytes.Reader, newCheck func() hash.Hash, checkSize int, limit int64) ([]byte, error) {
	start := r.Size() - int64(r.Len())
	h, err := readXZBlockHeader(r)
	if err != nil {
		return nil, err
	}
	lr, err := lzma.Reader2Config{DictCap: h.dictCap}.NewReader2(r)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	out, err := readLimited(lr, limit)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	if h.uncompressedSize >= 0 && int64(len(out)) != h.uncompressedSize {
		return nil, fmt.Errorf("xz: block holds %d bytes, header says %d", len(out), h.uncompressedSize)
	}
	// Block padding aligns the block (header and data) to four bytes.
	used := r.Size() - int64(r.Len()) - start
	if _, err := r.Seek((4-used%4)%4, io.SeekCurrent); err != nil {
		return nil, err
	}
	if h.x86 {
		unBCJX86(out, h.x86Start)
	}
	// The check covers the block's final output, after all filters.
	if err := verifyXZCheck(r, newCheck, checkSize, out); err != nil {
		return nil, err
	}
	return out, nil
}

func verifyXZCheck(r *bytes.Reader, newCheck func() hash.Hash, size int, data []byte) error {
	want := make([]byte, size)
	if _, err := io.ReadFull(r, want); err != nil {
		return errors.New("xz: truncated block check")
	}
	if newCheck == nil {
		return nil
	}
	h := newCheck()
	h.Write(data)
	got := h.Sum(nil)
	if size <= 8 { // CRC32 and CRC64 are stored little-endian
		for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
			got[i], got[j] = got[j], got[i]
		}
	}
	if !bytes.Equal(got, want) {
		return errors.New("xz: checksum mismatch: the compressed data is corrupt")
	}
	return nil
}

// Block header flag bits.
const (
	xzFilterCountMask     = 0x03
	xzCompressedPresent   = 0x40
	xzUncompressedPresent = 0x80
	xzReservedBlockFlags  = 0x3c
)

func readXZBlockHeader(r *bytes.Reader) (xzBlockHeader, error) {
	sizeByte, err := r.ReadByte()
	if err != nil {
		return xzBlockHeader{}, errors.New("xz: truncated block header")
	}
	raw := make([]byte, (int(sizeByte)+1)*4)
	raw[0] = sizeByte
	if _, err := io.ReadFull(r, raw[1:]); err != nil {
		return xzBlockHeader{}, errors.New("xz: truncated block header")
	}
	body, sum := raw[:len(raw)-4], raw[len(raw)-4:]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(sum) {
		return xzBlockHeader{}, errors.New("xz: corrupt block header")
	}
	flags := body[1]
	if flags&xzReservedBlockFlags != 0 {
		return xzBlockHeader{}, errors.New("xz: unsupported block header flags")
	}
	fr := bytes.NewReader(body[2:])
	h := xzBlockHeader{uncompressedSize: -1}
	if flags&xzCompressedPresent != 0 {
		if _, err := binary.ReadUvarint(fr); err != nil {
			return h, errors.New("xz: bad compressed size")
		}
	}
	if flags&xzUncompressedPresent != 0 {
		n, err := binary.ReadUvarint(fr)
		if err != nil || n > 1<<62 {
			return h, errors.New("xz: bad uncompressed size")
		}
		h.uncompressedSize = int64(n)
	}
	return h, readXZFilters(fr, int(flags&xzFilterCountMask)+1, &h)
}

// readXZFilters accepts the filter chains the kernel and kmod produce:
// LZMA2 alone, or x86 BCJ then LZMA2.
func readXZFilters(r *bytes.Reader, count int, h *xzBlockHeader) error {
	for i := range count {
		id, err1 := binary.ReadUvarint(r)
		n, err2 := binary.ReadUvarint(r)
		if err1 != nil || err2 != nil || n > uint64(r.Len()) {
			return errors.New("xz: corrupt filter flags")
		}
		props := make([]byte, n)
		if _, err := io.ReadFull(r, props); err != nil {
			return errors.New("xz: corrupt filter flags")
		}
		last := i == count-1
		switch {
		case id == xzFilterLZMA2 && last && len(props) == 1:
			dc, err := lzma.DecodeDictCap(props[0])
			if err != nil {
				return fmt.Errorf("xz: %w", err)
			}
			h.dictCap = int(max(dc, lzma.MinDictCap))
		case id == xzFilterX86 && !last && !h.x86 && (len(props) == 0 || len(props) == 4):
			h.x86 = true
			if len(props) == 4 {
				h.x86Start = binary.LittleEndian.Uint32(props)
			}
		default:
			return fmt.Errorf("xz: unsupported filter %#x (only x86 BCJ and LZMA2 are)", id)
		}
	}
	if h.dictCap == 0 {
		return errors.New("xz: block has no LZMA2 filter")
	}
	return nil
}

// unBCJX86 reverses the x86 BCJ filter in place. The encoder turned the
// 32-bit relative targets of CALL (E8) and JMP (E9) into absolute ones so
// that repeated calls to one function compress well; this turns them back.
// Which E8/E9 bytes were converted is decided by the same heuristic the
// encoder ran: it tracks, in a small bit mask, which of the previous few
// bytes were E8/E9 opcodes, and converts only when the operand's top
// byte is 0x00 or 0xFF (a plausible near displacement).
func unBCJX86(buf []byte, start uint32) {
	allowed := [8]bool{true, true, true, false, true, false, false, false}
	bitNumber := [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
	nearByte := func(b byte) bool { return b == 0x00 || b == 0xff }

	var mask uint32
	prevPos := start - 5
	for i := 0; i+5 <= len(buf); {
		if buf[i] != 0xe8 && buf[i] != 0xe9 {
			i++
			continue
		}
		pos := start + uint32(i)
		if gap := pos - prevPos; gap > 5 {
			mask = 0
		} else {
			for range gap {
				mask = (mask & 0x77) << 1
			}
		}
		prevPos = pos
		top := buf[i+4]
		if !nearByte(top) || !allowed[(mask>>1)&7] || mask>>1 >= 0x10 {
			i++
			mask |= 1
			if nearByte(top) {
				mask |= 0x10
			}
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (pos + 5)
			if mask == 0 {
				break
			}
			shift := 24 - bitNumber[(mask>>1)&7]*8
			if !nearByte(byte(dest >> shift)) {
				break
			}
			src = dest ^ (1<<(shift+8) - 1)
		}
		// Sign-extend from bit 24, as the encoder kept only 25 bits.
		dest &= 0x01ffffff
		if dest&0x01000000 != 0 {
			dest |= 0xff000000
		}
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 5
		mask = 0
	}
}
