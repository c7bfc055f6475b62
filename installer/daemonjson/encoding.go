package daemonjson

import (
	"bytes"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// encoding is how the file stores its text. Docker reads UTF-8 with or
// without a BOM and UTF-16 with a BOM (PowerShell's default); the file is
// written back the way it was read so that an untouched file stays
// byte-identical.
type encoding int

const (
	encUTF8 encoding = iota
	encUTF8BOM
	encUTF16LE
	encUTF16BE
)

var (
	bomUTF8    = []byte{0xEF, 0xBB, 0xBF}
	bomUTF16LE = []byte{0xFF, 0xFE}
	bomUTF16BE = []byte{0xFE, 0xFF}
)

// decodeText returns the file's text as UTF-8 without BOM.
func decodeText(data []byte) (encoding, []byte, error) {
	switch {
	case bytes.HasPrefix(data, bomUTF8):
		return checkUTF8(encUTF8BOM, data[len(bomUTF8):])
	case bytes.HasPrefix(data, bomUTF16LE):
		text, err := decodeUTF16(data[2:], false)
		return encUTF16LE, text, err
	case bytes.HasPrefix(data, bomUTF16BE):
		text, err := decodeUTF16(data[2:], true)
		return encUTF16BE, text, err
	default:
		return checkUTF8(encUTF8, data)
	}
}

// checkUTF8 refuses invalid UTF-8 as Docker does (it validates the decoded
// text before parsing).
func checkUTF8(enc encoding, text []byte) (encoding, []byte, error) {
	if utf8.Valid(text) {
		return enc, text, nil
	}
	off := 0
	for off < len(text) {
		r, size := utf8.DecodeRune(text[off:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		off += size
	}
	line, col := position(text, off)
	return enc, nil, &SyntaxError{Line: line, Column: col, encoding: true,
		Msg: "not valid UTF-8 (save the file as UTF-8, or as UTF-16 with a byte order mark)"}
}

// decodeUTF16 converts UTF-16 to UTF-8. Unpaired surrogates and a trailing
// odd byte are refused: they could not be written back unchanged.
func decodeUTF16(data []byte, bigEndian bool) ([]byte, error) {
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("%w: UTF-16 file has an odd number of bytes (truncated?); save it again as UTF-8 or UTF-16",
			ErrEncoding)
	}
	units := make([]uint16, len(data)/2)
	for i := range units {
		a, b := uint16(data[2*i]), uint16(data[2*i+1])
		if bigEndian {
			units[i] = a<<8 | b
		} else {
			units[i] = b<<8 | a
		}
	}
	out := make([]byte, 0, len(units))
	for i := 0; i < len(units); i++ {
		u := units[i]
		r := rune(u)
		if utf16.IsSurrogate(r) {
			if i+1 >= len(units) {
				return nil, badSurrogate(out)
			}
			r = utf16.DecodeRune(r, rune(units[i+1]))
			if r == utf8.RuneError {
				return nil, badSurrogate(out)
			}
			i++
		}
		out = utf8.AppendRune(out, r)
	}
	return out, nil
}

func badSurrogate(decoded []byte) error {
	line, col := position(decoded, len(decoded))
	return &SyntaxError{Line: line, Column: col, encoding: true,
		Msg: "unpaired UTF-16 surrogate (save the file again as UTF-8 or UTF-16)"}
}

// encodeText is the inverse of decodeText.
func encodeText(enc encoding, text []byte) []byte {
	switch enc {
	case encUTF8BOM:
		return append(append([]byte{}, bomUTF8...), text...)
	case encUTF16LE, encUTF16BE:
		out := make([]byte, 0, 2+2*len(text))
		if enc == encUTF16LE {
			out = append(out, bomUTF16LE...)
		} else {
			out = append(out, bomUTF16BE...)
		}
		for _, u := range utf16.Encode([]rune(string(text))) {
			if enc == encUTF16LE {
				out = append(out, byte(u), byte(u>>8))
			} else {
				out = append(out, byte(u>>8), byte(u))
			}
		}
		return out
	default:
		return append([]byte{}, text...)
	}
}

// position converts a byte offset in text to a 1-based line and a 1-based
// column counted in characters.
func position(text []byte, off int) (line, col int) {
	off = min(max(off, 0), len(text))
	line = 1 + bytes.Count(text[:off], []byte{'\n'})
	start := bytes.LastIndexByte(text[:off], '\n') + 1
	return line, 1 + utf8.RuneCount(text[start:off])
}
