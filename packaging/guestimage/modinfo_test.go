package guestimage

import (
	"bytes"
	"debug/elf"
	"slices"
	"strings"
	"testing"
)

func TestModuleDeps(t *testing.T) {
	tests := []struct {
		name    string
		ko      []byte
		want    []string
		wantErr string
	}{
		{"several", fakeKO("9p", []string{"9pnet", "fscache", "netfs"}, "v"), []string{"9pnet", "fscache", "netfs"}, ""},
		{"none", fakeKO("virtio", nil, "v"), nil, ""},
		{"dashes folded", fakeKO("x", []string{"snd-pcm", "a_b"}, "v"), []string{"snd_pcm", "a_b"}, ""},
		{"bad dependency name", fakeKO("x", []string{"../../etc"}, "v"), nil, "invalid dependency"},
		{"no .modinfo", buildELF64(elf.ET_REL, elf.EM_X86_64, nil, []testSection{{".text", elf.SHT_PROGBITS, []byte{1}}}), nil, "no .modinfo"},
		{"not ELF", []byte("not an elf at all"), nil, "not an ELF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ModuleDeps(tc.ko)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ModuleDeps = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseModinfoFields(t *testing.T) {
	mi, err := parseModinfo(fakeKO("virtio-pci", []string{"virtio"}, "6.1.0-57-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if mi.name != "virtio_pci" || !strings.HasPrefix(mi.vermagic, "6.1.0-57-amd64 SMP") {
		t.Fatalf("parsed %+v", mi)
	}
}

// A module compiled by gcc from C with a .modinfo section, the way
// MODULE_INFO() places it, checks the parser against a real toolchain's
// object layout rather than only the test's own ELF writer.
func TestModuleDepsGCCObject(t *testing.T) {
	src := `__attribute__((section(".modinfo"), used, aligned(1))) static const char a[] = "depends=virtio_ring,virtio";
__attribute__((section(".modinfo"), used, aligned(1))) static const char b[] = "name=virtio_test";
int init_module(void) { return 0; }
`
	obj := compileC(t, src)
	deps, err := ModuleDeps(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deps, []string{"virtio_ring", "virtio"}) {
		t.Fatalf("deps = %v", deps)
	}
	mi, _ := parseModinfo(obj)
	if mi.name != "virtio_test" {
		t.Fatalf("name = %q", mi.name)
	}
}

func TestDecompressModule(t *testing.T) {
	ko := fakeKO("fuse", nil, "v")
	tests := []struct {
		file string
		data []byte
	}{
		{"fuse.ko", ko},
		{"fuse.ko.xz", xzBytes(t, ko)},
		{"fuse.ko.xz", cliCompressOrNil(t, ko, "xz", "--check=crc32", "--lzma2=dict=1MiB", "-c")}, // as kmod's build does
		{"fuse.ko.zst", zstdBytes(t, ko)},
		{"fuse.ko.gz", gzipBytes(t, ko)},
	}
	for _, tc := range tests {
		if tc.data == nil {
			continue
		}
		got, err := decompressModule(tc.file, tc.data)
		if err != nil || !bytes.Equal(got, ko) {
			t.Errorf("%s: got %d bytes, %v", tc.file, len(got), err)
		}
	}
	if _, err := decompressModule("fuse.ko.bz2", ko); err == nil {
		t.Error("no error for an unknown module suffix")
	}
	if _, err := decompressModule("fuse.ko.zst", []byte("garbage")); err == nil {
		t.Error("no error for a corrupt .ko.zst")
	}
}

func TestModuleNameFromPath(t *testing.T) {
	tests := map[string]string{
		"kernel/fs/9p/9p.ko":               "9p",
		"/lib/modules/x/kernel/snd-pcm.ko": "snd_pcm",
		"virtiofs.ko.xz":                   "virtiofs",
		"a/fuse.ko.zst":                    "fuse",
		"a/b.ko.gz":                        "b",
		"modules.builtin":                  "",
		"a/ko":                             "",
		"a/b.ko.sig":                       "",
	}
	for in, want := range tests {
		if got := moduleNameFromPath(in); got != want {
			t.Errorf("moduleNameFromPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidModuleName(t *testing.T) {
	for _, ok := range []string{"9p", "virtio_pci", "nf_conntrack_ipv4", "A1"} {
		if !validModuleName(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "a/b", "..", "a b", "virtio-pci", "x.ko", strings.Repeat("a", 65)} {
		if validModuleName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
