package guestimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
)

func lz4LegacyBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := lz4.NewWriter(&buf)
	if err := zw.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func lzmaBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := lzma.WriterConfig{EOSMarker: true, SizeInHeader: false}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractVmlinuxFormats(t *testing.T) {
	vmlinux := fakeVmlinux(true)
	// KASLR kernels carry a relocation table after the ELF; it must be cut.
	raw := append(append([]byte(nil), vmlinux...), []byte("relocation table....")...)
	n := len(raw)
	tests := []struct {
		name    string
		payload func(t testing.TB) []byte
	}{
		{"gzip", func(t testing.TB) []byte { return gzipBytes(t, raw) }},
		{"xz", func(t testing.TB) []byte { return withSize(xzBytes(t, raw), n) }},
		{"xz with x86 BCJ as the kernel writes it", func(t testing.TB) []byte {
			return withSize(cliCompress(t, raw, "xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=32MiB"), n)
		}},
		{"zstd", func(t testing.TB) []byte { return withSize(zstdBytes(t, raw), n) }},
		{"lz4 legacy", func(t testing.TB) []byte { return withSize(lz4LegacyBytes(t, raw), n) }},
		{"lz4 legacy from lz4 -l", func(t testing.TB) []byte { return withSize(cliCompress(t, raw, "lz4", "-l", "-9", "-c"), n) }},
		{"bzip2", func(t testing.TB) []byte { return withSize(cliCompress(t, raw, "bzip2", "-9", "-c"), n) }},
		{"lzma", func(t testing.TB) []byte { return withSize(lzmaBytes(t, raw), n) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExtractVmlinux(fakeBzImage(tc.payload(t), "6.1.0-test"))
			if err != nil {
				t.Fatalf("ExtractVmlinux: %v", err)
			}
			if !bytes.Equal(got, vmlinux) {
				t.Fatalf("got %d bytes, want the %d-byte ELF without trailing data", len(got), len(vmlinux))
			}
		})
	}
}

func TestExtractVmlinuxErrors(t *testing.T) {
	good := fakeVmlinux(true)
	elf32 := make([]byte, 52)
	copy(elf32, elf.ELFMAG)
	elf32[elf.EI_CLASS], elf32[elf.EI_DATA], elf32[elf.EI_VERSION] = byte(elf.ELFCLASS32), byte(elf.ELFDATA2LSB), 1
	binary.LittleEndian.PutUint16(elf32[18:], uint16(elf.EM_386))
	binary.LittleEndian.PutUint32(elf32[20:], uint32(elf.EV_CURRENT))
	arm := buildELF64(elf.ET_EXEC, elf.EM_AARCH64, []testProg{{elf.PT_LOAD, []byte{1}}}, nil)

	truncated := fakeBzImage(gzipBytes(t, good), "v")
	truncated = truncated[:len(truncated)-200]
	oldProto := fakeBzImage(gzipBytes(t, good), "v")
	binary.LittleEndian.PutUint16(oldProto[offBootVersion:], 0x0206)

	tests := []struct {
		name  string
		image []byte
		want  string
	}{
		{"not a bzImage", []byte(strings.Repeat("x", 4096)), "HdrS"},
		{"old boot protocol", oldProto, "boot protocol 2.06"},
		{"payload outside file", truncated, "outside"},
		{"unknown compression", fakeBzImage([]byte("plain old data here"), "v"), "unknown kernel payload compression"},
		{"lzo", fakeBzImage(append([]byte{0x89, 'L', 'Z', 'O', 0, 0}, make([]byte, 10)...), "v"), "lzo-compressed kernels are not supported"},
		{"no PVH note", fakeBzImage(gzipBytes(t, fakeVmlinux(false)), "v"), "no PVH entry note"},
		{"not ELF", fakeBzImage(gzipBytes(t, []byte("#!/bin/sh\necho not a kernel\n")), "v"), "not an ELF"},
		{"32-bit ELF", fakeBzImage(gzipBytes(t, elf32), "v"), "want ELFCLASS64 x86-64"},
		{"arm64 ELF", fakeBzImage(gzipBytes(t, arm), "v"), "want ELFCLASS64 x86-64"},
		{"size trailer mismatch", fakeBzImage(withSize(zstdBytes(t, good), len(good)+1), "v"), "records"},
		{"corrupt xz", fakeBzImage(withSize(corrupt(xzBytes(t, good)), len(good)), "v"), "decompress xz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExtractVmlinux(tc.image)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// corrupt flips a byte in the middle of b.
func corrupt(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)/2] ^= 0x55
	return c
}

func TestKernelVersion(t *testing.T) {
	img := fakeBzImage(gzipBytes(t, fakeVmlinux(true)), "6.1.0-57-amd64")
	v, err := KernelVersion(img)
	if err != nil || v != "6.1.0-57-amd64" {
		t.Fatalf("KernelVersion = %q, %v", v, err)
	}
	binary.LittleEndian.PutUint16(img[offKernelVersion:], 0)
	if _, err := KernelVersion(img); err == nil {
		t.Fatal("no error for a missing version pointer")
	}
	if _, err := KernelVersion([]byte("short")); err == nil {
		t.Fatal("no error for a non-bzImage")
	}
}

func TestNotesContain(t *testing.T) {
	le := binary.LittleEndian
	notes := append(elfNote("GNU", 3, []byte{1, 2, 3}), elfNote("Xen", 18, []byte{0, 0, 0, 1})...)
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"present after another note", notes, true},
		{"other type", elfNote("Xen", 17, []byte{1}), false},
		{"other owner", elfNote("Linux", 18, []byte{1}), false},
		{"truncated", notes[:len(notes)-6], false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		if got := notesContain(tc.data, le, "Xen", 18); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
