package guestimage

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// x86Sample is real machine code: the test binary itself (Go-compiled
// x86-64, full of CALL/JMP), capped to keep the test quick.
func x86Sample(t *testing.T) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return b[:min(len(b), 1<<20)]
}

func TestDecodeXZAgainstXZUtils(t *testing.T) {
	code := x86Sample(t)
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 200_000)
	for i := range noise {
		noise[i] = byte(rng.IntN(256))
		if i%7 == 0 {
			noise[i] = 0xe8 // many call opcodes with random operands
		}
	}
	tests := []struct {
		name string
		data []byte
		args []string
	}{
		{"x86 BCJ crc32 (kernel style)", code, []string{"--check=crc32", "--x86", "--lzma2=preset=6"}},
		{"x86 BCJ crc64", code, []string{"--check=crc64", "--x86", "--lzma2"}},
		{"x86 BCJ sha256", noise, []string{"--check=sha256", "--x86", "--lzma2"}},
		{"x86 BCJ no check", noise, []string{"--check=none", "--x86", "--lzma2"}},
		{"x86 BCJ with start offset", code, []string{"--check=crc32", "--x86=start=4096", "--lzma2"}},
		{"LZMA2 only, several blocks", code, []string{"--check=crc32", "--block-size=200KiB", "-T1"}},
		{"x86 BCJ, several blocks", code, []string{"--check=crc32", "--block-size=300KiB", "-T1", "--x86", "--lzma2"}},
		{"tiny input", []byte{0xe8, 1, 2}, []string{"--check=crc32", "--x86", "--lzma2"}},
		{"empty input", nil, []string{"--check=crc32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--format=xz", "-c"}, tc.args...)
			packed := cliCompress(t, tc.data, "xz", args...)
			got, err := decodeXZ(packed, 64<<20)
			if err != nil {
				t.Fatalf("decodeXZ: %v", err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Fatalf("decoded %d bytes differ from the %d-byte input", len(got), len(tc.data))
			}
		})
	}
}

func TestDecodeXZErrors(t *testing.T) {
	good := xzBytes(t, bytes.Repeat([]byte("kernel "), 1000))
	badCheck := append([]byte(nil), good...)
	// The CRC32 check sits just before the index; index+footer are at
	// least 12+8 bytes for one block: flip a byte of the check.
	badCheck[len(badCheck)-12-12-1] ^= 0xff
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not xz", []byte("hello world, not xz"), "not an .xz stream"},
		{"bad header crc", append(append([]byte(nil), good[:8]...), 0, 0, 0, 0), "corrupt stream header"},
		{"truncated", good[:len(good)/2], "xz:"},
		{"corrupt data", corrupt(good), "xz:"},
		{"bad check", badCheck, "checksum mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeXZ(tc.data, 1<<20)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := decodeXZ(good, 100); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("limit not enforced: %v", err)
	}
}
