package guestimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kernelPackageFiles is the data.tar content of a fake linux-image package:
// a bzImage, config, modules.builtin, the modules and some documentation.
func kernelPackageFiles(t testing.TB, version string, mods []testModule) []tarFile {
	t.Helper()
	files := []tarFile{
		{"./boot/config-" + version, []byte("CONFIG_PVH=y\n")},
		{"./boot/vmlinuz-" + version, fakeBzImage(gzipBytes(t, fakeVmlinux(true)), version)},
		{"./lib/modules/" + version + "/modules.builtin", []byte("kernel/drivers/virtio/virtio_mmio.ko\n")},
	}
	for _, m := range mods {
		_, file := moduleFile(t, m, version)
		files = append(files, tarFile{"./lib/modules/" + version + "/" + m.path, file})
	}
	return append(files, tarFile{"./usr/share/doc/linux-image-" + version + "/changelog.gz", gzipBytes(t, []byte("changes"))})
}

func writeFile(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeKernelDeb writes a fake kernel package and returns its path.
func writeKernelDeb(t testing.TB, files []tarFile, ext string, compress func(testing.TB, []byte) []byte) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "linux-image-"+testKernel+"_1.0_amd64.deb", fakeDeb(t, files, ext, compress), 0o644)
}

func testAgent(t testing.TB) string {
	return writeFile(t, t.TempDir(), "agent", fakeAgent(), 0o755)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkOutDir verifies the three artifacts against the manifest and the
// initrd's contents against the modules.
func checkOutDir(t *testing.T, dir string, m *Manifest, agent []byte) {
	t.Helper()
	var onDisk Manifest
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &onDisk); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(onDisk.Modules, m.Modules) || onDisk.KernelVersion != m.KernelVersion {
		t.Fatalf("manifest on disk %+v differs from returned %+v", onDisk, m)
	}
	for _, name := range []string{VmlinuxName, InitrdName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		a := onDisk.Artifacts[name]
		if a.SHA256 != sha256Hex(b) || a.Size != int64(len(b)) {
			t.Errorf("%s: manifest says %+v, file has %d bytes %s", name, a, len(b), sha256Hex(b))
		}
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", name, fi.Mode())
		}
	}
	vm, _ := os.ReadFile(filepath.Join(dir, VmlinuxName))
	if !bytes.Equal(vm, fakeVmlinux(true)) {
		t.Error("vmlinux is not the kernel's ELF")
	}
	initrd, _ := os.ReadFile(filepath.Join(dir, InitrdName))
	if bytes.HasPrefix(initrd, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(initrd))
		if err != nil {
			t.Fatal(err)
		}
		if initrd, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]byte{}
	for _, e := range readCpio(t, initrd) {
		got[e.hdr.Name] = e.data
	}
	if !bytes.Equal(got["init"], agent) {
		t.Error("/init is not the agent")
	}
	want := ""
	for _, name := range m.Modules {
		want += name + "\n"
	}
	if string(got["etc/kata-deploy/modules.load"]) != want {
		t.Errorf("modules.load = %q, want %q", got["etc/kata-deploy/modules.load"], want)
	}
	for group, names := range m.Groups {
		list := "etc/kata-deploy/modules.d/" + group + ".load"
		if want := strings.Join(names, "\n") + "\n"; string(got[list]) != want {
			t.Errorf("%s = %q, want %q", list, got[list], want)
		}
		for _, name := range names {
			if !slices.Contains(m.OnDemand, name) {
				t.Errorf("group %s names %s, which is not among the on-demand modules", group, name)
			}
		}
	}
	for _, name := range append(slices.Clone(m.Modules), m.OnDemand...) {
		mi, err := parseModinfo(got["lib/modules/"+name+".ko"])
		if err != nil || mi.name != name {
			t.Errorf("lib/modules/%s.ko: %v (name %q)", name, err, mi.name)
		}
	}
}

func TestBuildFromDeb(t *testing.T) {
	files := kernelPackageFiles(t, testKernel, debianLikeModules())
	tests := []struct {
		ext      string
		compress func(testing.TB, []byte) []byte
	}{
		{".xz", xzBytes},
		{".zst", zstdBytes},
		{".gz", gzipBytes},
		{"", nil},
	}
	for _, tc := range tests {
		t.Run("data.tar"+tc.ext, func(t *testing.T) {
			deb := writeKernelDeb(t, files, tc.ext, tc.compress)
			out := filepath.Join(t.TempDir(), "out")
			var steps []string
			m, err := Build(context.Background(), Options{KernelDeb: deb, AgentBinary: testAgent(t), OutDir: out,
				Progress: func(s string) { steps = append(steps, s) }})
			if err != nil {
				t.Fatal(err)
			}
			if m.KernelVersion != testKernel || m.KernelSource != filepath.Base(deb) {
				t.Fatalf("manifest %+v", m)
			}
			if len(steps) == 0 {
				t.Error("no progress reported")
			}
			for _, s := range steps {
				if strings.Contains(s, "rereading") {
					t.Errorf("default modules needed a second pass: %q", s)
				}
			}
			// Boot loads the agent's channel only; the rest waits for a container that needs it.
			want := []string{"virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio_pci",
				"virtio_console"}
			if !slices.Equal(m.Modules, want) {
				t.Fatalf("modules = %v\nwant      %v", m.Modules, want)
			}
			wantGroups := map[string][]string{
				"9p":       {"9pnet", "9pnet_virtio", "netfs", "fscache", "9p"},
				"virtiofs": {"fuse", "virtiofs"},
				"net":      {"failover", "net_failover", "virtio_net"},
				"blk":      {"virtio_blk"},
				"fs":       {"crc32c_generic", "crc16", "jbd2", "mbcache", "ext4", "libcrc32c", "xfs"},
				"vsock":    {"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
			}
			if !maps.EqualFunc(m.Groups, wantGroups, slices.Equal) {
				t.Fatalf("module groups = %v\nwant            %v", m.Groups, wantGroups)
			}
			checkOutDir(t, out, m, fakeAgent())
		})
	}
}

// A dependency stored before the module needing it, and not among the
// likely helpers, is fetched by a second pass over the package.
func TestBuildFromDebSecondPass(t *testing.T) {
	mods := []testModule{
		{"kernel/fs/jbd2/jbd2.ko", nil},
		{"kernel/fs/mbcache.ko.xz", nil},
		{"kernel/fs/ext4/ext4.ko", []string{"jbd2", "mbcache"}},
	}
	deb := writeKernelDeb(t, kernelPackageFiles(t, testKernel, mods), ".xz", xzBytes)
	var steps []string
	out := t.TempDir()
	m, err := Build(context.Background(), Options{KernelDeb: deb, AgentBinary: testAgent(t), OutDir: out,
		Modules: []string{"ext4"}, Progress: func(s string) { steps = append(steps, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Modules, []string{"jbd2", "mbcache", "ext4"}) {
		t.Fatalf("modules = %v", m.Modules)
	}
	if !slices.ContainsFunc(steps, func(s string) bool { return strings.Contains(s, "rereading") }) {
		t.Errorf("expected a second pass, steps: %q", steps)
	}
	checkOutDir(t, out, m, fakeAgent())
}

func TestBuildReproducible(t *testing.T) {
	deb := writeKernelDeb(t, kernelPackageFiles(t, testKernel, debianLikeModules()), ".zst", zstdBytes)
	agent := testAgent(t)
	build := func(compress bool) (string, *Manifest) {
		out := t.TempDir()
		m, err := Build(context.Background(), Options{KernelDeb: deb, AgentBinary: agent, OutDir: out, Compress: compress})
		if err != nil {
			t.Fatal(err)
		}
		return out, m
	}
	dirA, a := build(false)
	_, b := build(false)
	if a.Artifacts[InitrdName] != b.Artifacts[InitrdName] || a.Artifacts[VmlinuxName] != b.Artifacts[VmlinuxName] {
		t.Fatalf("two builds differ:\n%+v\n%+v", a.Artifacts, b.Artifacts)
	}
	dirZ, z1 := build(true)
	_, z2 := build(true)
	if z1.Artifacts[InitrdName] != z2.Artifacts[InitrdName] {
		t.Fatal("two gzip builds differ")
	}
	if z1.Artifacts[InitrdName] == a.Artifacts[InitrdName] {
		t.Fatal("gzip option had no effect")
	}
	plain, _ := os.ReadFile(filepath.Join(dirA, InitrdName))
	packed, _ := os.ReadFile(filepath.Join(dirZ, InitrdName))
	zr, err := gzip.NewReader(bytes.NewReader(packed))
	if err != nil {
		t.Fatal(err)
	}
	unpacked, _ := io.ReadAll(zr)
	if !bytes.Equal(unpacked, plain) {
		t.Fatal("gzip initrd does not hold the plain initrd")
	}
	if zr.ModTime.Unix() > 0 || zr.Name != "" {
		t.Fatalf("gzip header carries mtime %v / name %q", zr.ModTime, zr.Name)
	}
	checkOutDir(t, dirZ, z1, fakeAgent())
}

func TestBuildFromFiles(t *testing.T) {
	dir, _ := writeModulesDir(t, debianLikeModules(), []string{})
	tmp := t.TempDir()
	vmlinuz := writeFile(t, tmp, "vmlinuz-"+testKernel, fakeBzImage(withSize(zstdBytes(t, fakeVmlinux(true)), len(fakeVmlinux(true))), testKernel), 0o644)
	out := filepath.Join(tmp, "out")
	m, err := Build(context.Background(), Options{Vmlinuz: vmlinuz, ModulesDir: dir, AgentBinary: testAgent(t), OutDir: out,
		Modules: []string{"9p", "9pnet_virtio"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.KernelVersion != testKernel || m.KernelSource != filepath.Base(vmlinuz) {
		t.Fatalf("manifest %+v", m)
	}
	if !slices.Equal(m.Modules, []string{"9pnet", "netfs", "fscache", "9p", "virtio", "virtio_ring", "9pnet_virtio"}) {
		t.Fatalf("modules = %v", m.Modules)
	}
	checkOutDir(t, out, m, fakeAgent())

	// An already extracted vmlinux works too; the version then comes from
	// the modules directory.
	elfKernel := writeFile(t, tmp, "vmlinux", fakeVmlinux(true), 0o644)
	m2, err := Build(context.Background(), Options{Vmlinuz: elfKernel, ModulesDir: dir, AgentBinary: testAgent(t), OutDir: out,
		Modules: []string{"9p", "9pnet_virtio"}})
	if err != nil {
		t.Fatal(err)
	}
	if m2.KernelVersion != testKernel || m2.Artifacts[VmlinuxName] != m.Artifacts[VmlinuxName] || m2.Artifacts[InitrdName] != m.Artifacts[InitrdName] {
		t.Fatalf("vmlinux input gave %+v, bzImage input %+v", m2, m)
	}
}

func TestBuildErrors(t *testing.T) {
	agent := testAgent(t)
	tmp := t.TempDir()
	goodFiles := kernelPackageFiles(t, testKernel, debianLikeModules())
	goodDeb := writeKernelDeb(t, goodFiles, ".xz", xzBytes)
	dynAgent := writeFile(t, tmp, "dyn", buildELF64(elf.ET_EXEC, elf.EM_X86_64,
		[]testProg{{elf.PT_INTERP, []byte("/lib64/ld-linux-x86-64.so.2\x00")}, {elf.PT_LOAD, []byte{1}}}, nil), 0o755)
	script := writeFile(t, tmp, "script", []byte("#!/bin/sh\n"), 0o755)
	noKernel := writeKernelDeb(t, goodFiles[2:], ".xz", xzBytes)
	noModules := writeKernelDeb(t, goodFiles[:2], ".xz", xzBytes)
	twoVersions := writeKernelDeb(t, append(slices.Clone(goodFiles), tarFile{"./lib/modules/9.9.9/kernel/x.ko", fakeKO("x", nil, "9.9.9")}), ".xz", xzBytes)
	otherFiles := slices.Clone(goodFiles)
	otherFiles[1].data = fakeBzImage(gzipBytes(t, fakeVmlinux(true)), "6.1.0-other")
	versionMismatch := writeKernelDeb(t, otherFiles, ".xz", xzBytes)
	noPVH := slices.Clone(goodFiles)
	noPVH[1].data = fakeBzImage(gzipBytes(t, fakeVmlinux(false)), testKernel)
	noPVHDeb := writeKernelDeb(t, noPVH, ".xz", xzBytes)
	notDeb := writeFile(t, tmp, "x.deb", []byte("this is not an ar archive"), 0o644)
	modsDir, _ := writeModulesDir(t, debianLikeModules(), []string{})
	otherVmlinuz := writeFile(t, tmp, "vmlinuz-other", fakeBzImage(gzipBytes(t, fakeVmlinux(true)), "6.1.0-other"), 0o644)

	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no kernel", Options{AgentBinary: agent, OutDir: tmp}, "no kernel given"},
		{"both kernels", Options{KernelDeb: goodDeb, Vmlinuz: "x", AgentBinary: agent, OutDir: tmp}, "not both"},
		{"rpm", Options{KernelDeb: "kernel-6.1.rpm", AgentBinary: agent, OutDir: tmp}, "RPM kernel packages are not supported yet"},
		{"no agent", Options{KernelDeb: goodDeb, OutDir: tmp}, "no agent"},
		{"no out dir", Options{KernelDeb: goodDeb, AgentBinary: agent}, "no output directory"},
		{"dynamic agent", Options{KernelDeb: goodDeb, AgentBinary: dynAgent, OutDir: tmp}, "dynamically linked"},
		{"script agent", Options{KernelDeb: goodDeb, AgentBinary: script, OutDir: tmp}, "not an ELF"},
		{"package without kernel", Options{KernelDeb: noKernel, AgentBinary: agent, OutDir: tmp}, "no /boot/vmlinuz"},
		{"package without modules", Options{KernelDeb: noModules, AgentBinary: agent, OutDir: tmp}, "no kernel modules"},
		{"two kernel versions", Options{KernelDeb: twoVersions, AgentBinary: agent, OutDir: tmp}, "several kernel versions"},
		{"vmlinuz of another version", Options{KernelDeb: versionMismatch, AgentBinary: agent, OutDir: tmp}, "reports kernel 6.1.0-other"},
		{"kernel without PVH", Options{KernelDeb: noPVHDeb, AgentBinary: agent, OutDir: tmp}, "no PVH entry note"},
		{"not a package", Options{KernelDeb: notDeb, AgentBinary: agent, OutDir: tmp}, "not a Debian package"},
		{"missing module", Options{KernelDeb: goodDeb, AgentBinary: agent, OutDir: tmp, Modules: []string{"nfs"}}, "neither a loadable module"},
		{"vmlinuz without modules dir", Options{Vmlinuz: otherVmlinuz, AgentBinary: agent, OutDir: tmp}, "--modules-dir"},
		{"modules of another kernel", Options{Vmlinuz: otherVmlinuz, ModulesDir: modsDir, AgentBinary: agent, OutDir: tmp}, "was built for kernel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	entries, _ := os.ReadDir(tmp)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"dyn", "script", "vmlinuz-other", "x.deb"}) {
		t.Errorf("failed builds left files in the output directory: %v", names)
	}
}

func TestBuildCancelled(t *testing.T) {
	deb := writeKernelDeb(t, kernelPackageFiles(t, testKernel, debianLikeModules()), ".xz", xzBytes)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, Options{KernelDeb: deb, AgentBinary: testAgent(t), OutDir: t.TempDir()}); err == nil {
		t.Fatal("cancelled build succeeded")
	}
}

// A failure after some artifacts were staged leaves the directory as it
// was: old files intact, no temporary files.
func TestWriteOutputsAtomic(t *testing.T) {
	dir := t.TempDir()
	old := map[string]string{VmlinuxName: "old kernel", InitrdName: "old initrd", ManifestName: "{}"}
	for name, data := range old {
		writeFile(t, dir, name, []byte(data), 0o644)
	}
	in := &kernelInput{version: testKernel, source: "k.deb"}
	bad := []File{{Path: "/../escape", Mode: 0o644}}
	if _, err := writeOutputs(dir, in, fakeVmlinux(true), bad, false); err == nil {
		t.Fatal("writeOutputs accepted a bad initrd entry")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(old) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v after a failed build", names)
	}
	for name, data := range old {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != data {
			t.Errorf("%s was changed to %d bytes", name, len(b))
		}
	}
	// And a good write replaces all three.
	m, err := writeOutputs(dir, in, fakeVmlinux(true), initrdFiles(fakeAgent(), nil, nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Modules) != 0 || m.Modules == nil {
		t.Errorf("modules = %#v, want an empty list (not null)", m.Modules)
	}
	checkOutDir(t, dir, m, fakeAgent())
}
