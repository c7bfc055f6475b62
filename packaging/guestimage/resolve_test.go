package guestimage

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testKernel = "6.1.0-test-amd64"

// testModule describes one module of a synthetic kernel.
type testModule struct {
	path string // relative to lib/modules/<version>/, e.g. kernel/fs/9p/9p.ko
	deps []string
}

// debianLikeModules mirrors the dependency graph of Debian 12's kernel for
// the modules a guest uses, plus a few it must not pull in.
func debianLikeModules() []testModule {
	return []testModule{
		{"kernel/drivers/virtio/virtio.ko", nil},
		{"kernel/drivers/virtio/virtio_ring.ko", nil},
		{"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", nil},
		{"kernel/drivers/virtio/virtio_pci_modern_dev.ko", nil},
		{"kernel/drivers/virtio/virtio_pci.ko", []string{"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"}},
		{"kernel/drivers/char/virtio_console.ko", []string{"virtio", "virtio_ring"}},
		{"kernel/drivers/block/virtio_blk.ko", []string{"virtio", "virtio_ring"}},
		{"kernel/drivers/net/net_failover.ko", []string{"failover"}},
		{"kernel/net/core/failover.ko", nil},
		{"kernel/drivers/net/virtio_net.ko", []string{"net_failover", "virtio", "virtio_ring"}},
		{"kernel/net/9p/9pnet.ko", nil},
		{"kernel/net/9p/9pnet_virtio.ko", []string{"9pnet", "virtio_ring", "virtio"}},
		{"kernel/fs/netfs/netfs.ko.zst", nil},
		{"kernel/fs/fscache/fscache.ko.xz", []string{"netfs"}},
		{"kernel/fs/9p/9p.ko", []string{"9pnet", "fscache", "netfs"}},
		{"kernel/fs/fuse/fuse.ko", nil},
		{"kernel/fs/fuse/virtiofs.ko", []string{"fuse", "virtio", "virtio_ring"}},
		{"kernel/net/vmw_vsock/vsock.ko", nil},
		{"kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", []string{"vsock"}},
		{"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", []string{"vmw_vsock_virtio_transport_common", "virtio", "virtio_ring", "vsock"}},
		{"kernel/fs/ext4/ext4.ko", []string{"jbd2", "mbcache", "crc16"}},
		{"kernel/fs/xfs/xfs.ko", []string{"libcrc32c"}},
		{"kernel/lib/crc16.ko", nil},
		{"kernel/lib/libcrc32c.ko", nil},
		{"kernel/crypto/crc32c_generic.ko", nil},
		{"kernel/fs/btrfs/btrfs.ko", []string{"libcrc32c"}},
		{"kernel/fs/jbd2/jbd2.ko", nil},
		{"kernel/fs/mbcache.ko", nil},
	}
}

// moduleFile returns the file contents for a module path, compressed as
// its suffix says.
func moduleFile(t testing.TB, m testModule, vermagic string) (ko, file []byte) {
	ko = fakeKO(moduleNameFromPath(m.path), m.deps, vermagic)
	switch {
	case strings.HasSuffix(m.path, ".xz"):
		return ko, xzBytes(t, ko)
	case strings.HasSuffix(m.path, ".zst"):
		return ko, zstdBytes(t, ko)
	case strings.HasSuffix(m.path, ".gz"):
		return ko, gzipBytes(t, ko)
	}
	return ko, ko
}

// writeModulesDir lays mods out under a fresh /lib/modules/<version>.
func writeModulesDir(t testing.TB, mods []testModule, builtin []string) (string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", testKernel)
	plain := map[string][]byte{}
	for _, m := range mods {
		ko, file := moduleFile(t, m, testKernel)
		plain[moduleNameFromPath(m.path)] = ko
		p := filepath.Join(dir, filepath.FromSlash(m.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, file, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if builtin != nil {
		if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, plain
}

// assertLoadOrder checks that every module comes after its dependencies.
func assertLoadOrder(t *testing.T, mods []Module) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for i, m := range mods {
		for _, d := range m.Depends {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s (at %d) needs %s, found at %d (ok=%v)", m.Name, i, d, j, ok)
			}
		}
	}
}

func TestResolveModulesOrder(t *testing.T) {
	dir, plain := writeModulesDir(t, debianLikeModules(), []string{"kernel/drivers/virtio/virtio_mmio.ko"})
	tests := []struct {
		name string
		want []string
		out  []string
	}{
		{"9p over virtio", []string{"9p", "9pnet_virtio"},
			[]string{"9pnet", "netfs", "fscache", "9p", "virtio", "virtio_ring", "9pnet_virtio"}},
		{"dash spelling and duplicates", []string{"virtio-pci", "virtio_pci"},
			[]string{"virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "virtio_pci"}},
		{"built-in module skipped", []string{"virtio_mmio", "fuse"}, []string{"fuse"}},
		{"nothing", []string{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mods, err := ResolveModules(dir, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if got := moduleNames(mods); !slices.Equal(got, tc.out) {
				t.Fatalf("order = %v, want %v", got, tc.out)
			}
			assertLoadOrder(t, mods)
			for _, m := range mods {
				if !bytes.Equal(m.Data, plain[m.Name]) {
					t.Errorf("%s: data is not the uncompressed module", m.Name)
				}
			}
		})
	}
}

func TestResolveModulesDefaults(t *testing.T) {
	dir, _ := writeModulesDir(t, debianLikeModules(), []string{})
	first, err := ResolveModules(dir, append(DefaultModules(), groupRoots(ModuleGroups())...))
	if err != nil {
		t.Fatal(err)
	}
	assertLoadOrder(t, first)
	got := moduleNames(first)
	for _, need := range []string{"virtio", "virtio_ring", "virtio_pci", "virtio_console", "virtio_blk", "virtio_net",
		"netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "fuse", "virtiofs",
		"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
		"crc32c_generic", "ext4", "jbd2", "mbcache", "crc16", "xfs", "libcrc32c"} {
		if !slices.Contains(got, need) {
			t.Errorf("default modules lack %s: %v", need, got)
		}
	}
	for _, unwanted := range []string{"btrfs"} {
		if slices.Contains(got, unwanted) {
			t.Errorf("default modules pulled in %s", unwanted)
		}
	}
	again, err := ResolveModules(dir, append(DefaultModules(), groupRoots(ModuleGroups())...))
	if err != nil || !slices.Equal(moduleNames(again), got) {
		t.Fatalf("second resolve differs: %v, %v", moduleNames(again), err)
	}
}

func TestResolveModulesErrors(t *testing.T) {
	base := debianLikeModules()
	withBroken := append(slices.Clone(base), testModule{"kernel/x/broken.ko", []string{"ghost"}})
	withCycle := append(slices.Clone(base), testModule{"kernel/x/ca.ko", []string{"cb"}}, testModule{"kernel/x/cb.ko", []string{"ca"}})
	tests := []struct {
		name    string
		mods    []testModule
		builtin []string
		want    []string
		errText string
	}{
		{"absent and not built in", base, []string{"kernel/fs/ext2/ext2.ko"}, []string{"9p", "nfsv4"}, "neither a loadable module nor built into"},
		{"missing dependency", withBroken, nil, []string{"broken"}, "needs ghost"},
		{"cycle", withCycle, nil, []string{"ca"}, "cycle"},
		{"bad name", base, nil, []string{"../../etc/passwd"}, "invalid module name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := writeModulesDir(t, tc.mods, tc.builtin)
			_, err := ResolveModules(dir, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("err = %v, want %q", err, tc.errText)
			}
		})
	}
	if _, err := ResolveModules(filepath.Join(t.TempDir(), "nope"), []string{"9p"}); err == nil {
		t.Error("no error for a missing directory")
	}
	if _, err := ResolveModules(t.TempDir(), []string{"9p"}); err == nil || !strings.Contains(err.Error(), "no kernel modules") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestResolveModulesWithoutBuiltinList(t *testing.T) {
	dir, _ := writeModulesDir(t, debianLikeModules(), nil) // no modules.builtin
	mods, assumed, err := resolveModulesDir(dir, []string{"9p", "virtio_mmio"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(assumed, []string{"virtio_mmio"}) {
		t.Fatalf("assumed = %v, want [virtio_mmio]", assumed)
	}
	if slices.Contains(moduleNames(mods), "virtio_mmio") || !slices.Contains(moduleNames(mods), "9p") {
		t.Fatalf("modules = %v", moduleNames(mods))
	}
}

func TestResolveModulesPrefersUpdates(t *testing.T) {
	dir, _ := writeModulesDir(t, debianLikeModules(), []string{})
	newer := fakeKO("fuse", nil, testKernel+"-updated")
	p := filepath.Join(dir, "updates", "dkms", "fuse.ko")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, newer, 0o644); err != nil {
		t.Fatal(err)
	}
	mods, err := ResolveModules(dir, []string{"fuse"})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 1 || mods[0].Path != p || !bytes.Equal(mods[0].Data, newer) {
		t.Fatalf("got %+v, want the updates/ copy", mods[0].Path)
	}
}

func TestCheckVermagic(t *testing.T) {
	mods := []Module{{Name: "a", Vermagic: testKernel + " SMP preempt mod_unload "}}
	if err := checkVermagic(mods, testKernel); err != nil {
		t.Fatal(err)
	}
	if err := checkVermagic(mods, "6.1.0-other"); err == nil || !strings.Contains(err.Error(), "built for kernel") {
		t.Fatalf("mismatch not caught: %v", err)
	}
	if err := checkVermagic([]Module{{Name: "b"}}, testKernel); err == nil {
		t.Fatal("module without vermagic accepted")
	}
}
