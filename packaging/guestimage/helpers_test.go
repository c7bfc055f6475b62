package guestimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Test fixtures are built in code: tiny ELF files, bzImages, modules and
// Debian packages, so no binaries live in testdata.

type testSection struct {
	name string
	typ  elf.SectionType
	data []byte
}

type testProg struct {
	typ  elf.ProgType
	data []byte
}

// buildELF64 writes a little-endian ELF64 file: header, program headers,
// segment and section contents, .shstrtab, section header table.
func buildELF64(typ elf.Type, machine elf.Machine, progs []testProg, sections []testSection) []byte {
	const ehsize, phsize, shsize = 64, 56, 64
	le := binary.LittleEndian
	body := new(bytes.Buffer)
	off := func() uint64 { return uint64(ehsize + phsize*len(progs) + body.Len()) }

	ph := new(bytes.Buffer)
	for _, p := range progs {
		o := off()
		body.Write(p.data)
		for body.Len()%8 != 0 {
			body.WriteByte(0)
		}
		var h [phsize]byte
		le.PutUint32(h[0:], uint32(p.typ))
		le.PutUint32(h[4:], uint32(elf.PF_R))
		le.PutUint64(h[8:], o)
		le.PutUint64(h[32:], uint64(len(p.data)))
		le.PutUint64(h[40:], uint64(len(p.data)))
		le.PutUint64(h[48:], 4)
		ph.Write(h[:])
	}

	var shstr bytes.Buffer
	shstr.WriteByte(0)
	all := append([]testSection{{name: ""}}, sections...)
	all = append(all, testSection{name: ".shstrtab", typ: elf.SHT_STRTAB})
	type placed struct{ nameOff, off, size uint64 }
	pl := make([]placed, len(all))
	for i, s := range all {
		if i == 0 {
			continue
		}
		pl[i].nameOff = uint64(shstr.Len())
		shstr.WriteString(s.name)
		shstr.WriteByte(0)
	}
	for i, s := range all {
		if i == 0 {
			continue
		}
		data := s.data
		if s.name == ".shstrtab" {
			data = shstr.Bytes()
		}
		pl[i].off, pl[i].size = off(), uint64(len(data))
		body.Write(data)
	}
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}
	shoff := off()

	var hdr [ehsize]byte
	copy(hdr[:], elf.ELFMAG)
	hdr[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	le.PutUint16(hdr[16:], uint16(typ))
	le.PutUint16(hdr[18:], uint16(machine))
	le.PutUint32(hdr[20:], uint32(elf.EV_CURRENT))
	if len(progs) > 0 {
		le.PutUint64(hdr[32:], ehsize)
	}
	le.PutUint64(hdr[40:], shoff)
	le.PutUint16(hdr[52:], ehsize)
	le.PutUint16(hdr[54:], phsize)
	le.PutUint16(hdr[56:], uint16(len(progs)))
	le.PutUint16(hdr[58:], shsize)
	le.PutUint16(hdr[60:], uint16(len(all)))
	le.PutUint16(hdr[62:], uint16(len(all)-1))

	out := new(bytes.Buffer)
	out.Write(hdr[:])
	out.Write(ph.Bytes())
	out.Write(body.Bytes())
	for i, s := range all {
		var h [shsize]byte
		if i > 0 {
			le.PutUint32(h[0:], uint32(pl[i].nameOff))
			le.PutUint32(h[4:], uint32(s.typ))
			le.PutUint64(h[24:], pl[i].off)
			le.PutUint64(h[32:], pl[i].size)
			le.PutUint64(h[48:], 1)
		}
		out.Write(h[:])
	}
	return out.Bytes()
}

// elfNote encodes one ELF note.
func elfNote(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	var h [12]byte
	le.PutUint32(h[0:], uint32(len(name)+1))
	le.PutUint32(h[4:], uint32(len(desc)))
	le.PutUint32(h[8:], typ)
	b.Write(h[:])
	b.WriteString(name + "\x00")
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

// fakeVmlinux is an x86-64 ELF executable with the notes a kernel carries;
// withPVH adds XEN_ELFNOTE_PHYS32_ENTRY.
func fakeVmlinux(withPVH bool) []byte {
	notes := elfNote("GNU", 3, []byte{1, 2, 3, 4}) // a build ID, as real kernels have
	notes = append(notes, elfNote("Linux", 6, []byte("6.1.0-test\x00"))...)
	if withPVH {
		notes = append(notes, elfNote("Xen", xenElfnotePhys32Entry, []byte{0, 0x10, 0, 1})...)
	}
	text := bytes.Repeat([]byte{0x90, 0xe8, 0x10, 0x00, 0x00, 0x00}, 300) // nops and calls
	return buildELF64(elf.ET_EXEC, elf.EM_X86_64,
		[]testProg{{elf.PT_LOAD, text}, {elf.PT_NOTE, notes}},
		[]testSection{{".text", elf.SHT_PROGBITS, text}, {".notes", elf.SHT_NOTE, notes}})
}

// fakeAgent is a minimal static x86-64 executable.
func fakeAgent() []byte {
	return buildELF64(elf.ET_EXEC, elf.EM_X86_64, []testProg{{elf.PT_LOAD, []byte{0xf4}}}, nil)
}

// fakeKO is a relocatable ELF with a .modinfo section, like a .ko file.
func fakeKO(name string, depends []string, vermagic string) []byte {
	info := fmt.Sprintf("license=GPL\x00depends=%s\x00name=%s\x00vermagic=%s SMP preempt mod_unload modversions \x00",
		strings.Join(depends, ","), name, vermagic)
	return buildELF64(elf.ET_REL, elf.EM_X86_64, nil, []testSection{
		{".text", elf.SHT_PROGBITS, []byte{0xc3}},
		{".modinfo", elf.SHT_PROGBITS, []byte(info)},
	})
}

// fakeBzImage wraps a compressed payload the way arch/x86/boot does:
// setup sectors with the header, then protected-mode code holding the
// payload at payload_offset.
func fakeBzImage(payload []byte, version string) []byte {
	le := binary.LittleEndian
	const setupSects = 4
	img := make([]byte, (setupSects+1)*512)
	img[offSetupSects] = setupSects
	copy(img[offHeaderMagic:], "HdrS")
	le.PutUint16(img[offBootVersion:], 0x020f)
	copy(img[0x400:], version+" (builder@example.org) #1 SMP\x00")
	le.PutUint16(img[offKernelVersion:], 0x400-0x200)
	const codeBefore = 0x123
	le.PutUint32(img[offPayloadOffset:], codeBefore)
	le.PutUint32(img[offPayloadLength:], uint32(len(payload)))
	img = append(img, bytes.Repeat([]byte{0xcc}, codeBefore)...)
	img = append(img, payload...)
	return append(img, bytes.Repeat([]byte{0xcc}, 77)...) // decompressor code, signature, ...
}

// withSize appends the uncompressed size as the kernel build does.
func withSize(compressed []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(append([]byte(nil), compressed...), uint32(n))
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xzBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// cliCompress runs a compressor found on PATH, skipping the test if absent.
func cliCompress(t testing.TB, data []byte, name string, args ...string) []byte {
	t.Helper()
	testreq.Command(t, name)
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out.Bytes()
}

// tarFile is one regular file in a test package.
type tarFile struct {
	name string
	data []byte
}

func tarBytes(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// arBytes writes an ar archive (the .deb container); GNU-style trailing
// slashes on member names are used for odd-numbered members to cover both.
func arBytes(members []tarFile) []byte {
	var buf bytes.Buffer
	buf.WriteString(arMagic)
	for i, m := range members {
		name := m.name
		if i%2 == 1 {
			name += "/"
		}
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", name, 0, 0, 0, 0o100644, len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// fakeDeb builds a kernel package whose data.tar is compressed by compress
// and named data.tar<ext>.
func fakeDeb(t testing.TB, files []tarFile, ext string, compress func(testing.TB, []byte) []byte) []byte {
	t.Helper()
	data := tarBytes(t, files)
	if compress != nil {
		data = compress(t, data)
	}
	control := gzipBytes(t, tarBytes(t, []tarFile{{"./control", []byte("Package: linux-image-test\n")}}))
	return arBytes([]tarFile{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", control},
		{"data.tar" + ext, data},
	})
}

// cliCompressOrNil is cliCompress for optional cases: nil when the tool is
// absent, so the rest of the table still runs.
func cliCompressOrNil(t testing.TB, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Logf("SKIP case: %s not installed", name)
		return nil
	}
	return cliCompress(t, data, name, args...)
}

// compileC compiles C source to an x86-64 object file with gcc.
func compileC(t *testing.T, src string) []byte {
	t.Helper()
	testreq.Command(t, "gcc")
	out := filepath.Join(t.TempDir(), "m.o")
	cmd := exec.Command("gcc", "-c", "-O2", "-x", "c", "-o", out, "-")
	cmd.Stdin = strings.NewReader(src)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
