package guestimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests in this file use Debian's real kernel package. It is fetched
// with apt-get download into $KATA_TEST_CACHE (default
// /var/cache/kata-deploy/test) once and reused. They skip under -short.

func testCacheDir() string {
	if d := os.Getenv("KATA_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kata-deploy/test"
}

// realKernelDeb returns Debian's generic kernel package, downloading it if
// needed; without apt it falls back to any generic kernel package already
// in the cache, and skips loudly when there is none.
func realKernelDeb(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: -short: the real-kernel test reads a 70 MB package")
	}
	dir := testCacheDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	deb, err := FetchDebianKernel(ctx, dir)
	if err == nil {
		return deb
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "linux-image-[0-9]*-amd64_*_amd64.deb"))
	cached = slices.DeleteFunc(cached, func(p string) bool { return strings.Contains(filepath.Base(p), "-cloud-") })
	if len(cached) == 0 {
		t.Skipf("SKIP (LOUD): no real Debian kernel package: FetchDebianKernel into %s failed: %v. CI needs apt with Debian's sources (run apt-get update) or a linux-image-*-amd64 .deb in $KATA_TEST_CACHE", dir, err)
	}
	slices.Sort(cached)
	t.Logf("apt failed (%v); using cached %s", err, cached[len(cached)-1])
	return cached[len(cached)-1]
}

// buildBootInit compiles testdata/bootinit as a static binary.
func buildBootInit(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "bootinit", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "main.go", src, 0o644)
	writeFile(t, dir, "go.mod", []byte("module bootinit\n\ngo 1.26\n"), 0o644)
	out := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test init: %v\n%s", err, b)
	}
	return out
}

func TestRealDebianKernel(t *testing.T) {
	deb := realKernelDeb(t)
	agent := buildBootInit(t)
	out := t.TempDir()
	start := time.Now()
	m, err := Build(context.Background(), Options{KernelDeb: deb, AgentBinary: agent, OutDir: out,
		Progress: func(s string) { t.Logf("[%5.1fs] %s", time.Since(start).Seconds(), s) }})
	if err != nil {
		t.Fatalf("Build from %s: %v", deb, err)
	}
	t.Logf("kernel %s modules %v", m.KernelVersion, m.Modules)

	t.Run("vmlinux has a PVH entry", func(t *testing.T) {
		vm, err := os.ReadFile(filepath.Join(out, VmlinuxName))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := validateVmlinux(vm); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("9p modules in dependency order", func(t *testing.T) {
		pos := map[string]int{}
		for i, name := range m.Modules {
			pos[name] = i
		}
		for _, name := range []string{"netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "virtio_ring", "virtio_pci", "fuse", "virtiofs", "vsock"} {
			if _, ok := pos[name]; !ok {
				t.Fatalf("%s missing from %v", name, m.Modules)
			}
		}
		before := [][2]string{{"netfs", "9p"}, {"fscache", "9p"}, {"9pnet", "9p"}, {"netfs", "fscache"},
			{"9pnet", "9pnet_virtio"}, {"virtio_ring", "9pnet_virtio"}, {"fuse", "virtiofs"}, {"vsock", "vmw_vsock_virtio_transport"}}
		for _, b := range before {
			if pos[b[0]] >= pos[b[1]] {
				t.Errorf("%s must load before %s: %v", b[0], b[1], m.Modules)
			}
		}
	})

	t.Run("same sha256 from the unpacked package", func(t *testing.T) {
		if _, err := exec.LookPath("dpkg-deb"); err != nil {
			t.Skip("SKIP: dpkg-deb not installed; the synthetic TestBuildReproducible still covers determinism")
		}
		root := t.TempDir()
		if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x: %v: %s", err, b)
		}
		out2 := t.TempDir()
		m2, err := Build(context.Background(), Options{
			Vmlinuz:     filepath.Join(root, "boot", "vmlinuz-"+m.KernelVersion),
			ModulesDir:  filepath.Join(root, "lib", "modules", m.KernelVersion),
			AgentBinary: agent, OutDir: out2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if m2.Artifacts[VmlinuxName] != m.Artifacts[VmlinuxName] || m2.Artifacts[InitrdName] != m.Artifacts[InitrdName] {
			t.Fatalf("artifacts differ:\nfrom .deb: %+v\nfrom dir:  %+v", m.Artifacts, m2.Artifacts)
		}
		if !slices.Equal(m2.Modules, m.Modules) {
			t.Fatalf("modules differ: %v vs %v", m2.Modules, m.Modules)
		}
	})

	t.Run("boots under QEMU", func(t *testing.T) {
		bootGuest(t, out, len(m.Modules))
	})
}

// bootGuest boots the image with QEMU (TCG, qboot, PVH vmlinux) and checks
// the test init's report: every module loaded, 9p mounted, virtio-serial
// port found.
func bootGuest(t *testing.T, dir string, modules int) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("SKIP: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	const qboot = "/usr/share/qemu/qboot.rom"
	if _, err := os.Stat(qboot); err != nil {
		t.Skipf("SKIP: %s missing (it ships with Debian's qemu-system-x86)", qboot)
	}
	work := t.TempDir()
	share := filepath.Join(work, "share")
	os.MkdirAll(share, 0o755)
	writeFile(t, share, "hello.txt", []byte("hello from the host\n"), 0o644)
	console := filepath.Join(work, "console.txt")
	port := filepath.Join(work, "port.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-M", "q35", "-bios", qboot, "-m", "256", "-smp", "1",
		"-display", "none", "-no-reboot", "-nodefaults", "-no-user-config",
		"-serial", "file:"+console,
		"-kernel", filepath.Join(dir, VmlinuxName), "-initrd", filepath.Join(dir, InitrdName),
		"-append", "console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests pci=lastbus=0 nomodeset",
		"-fsdev", "local,id=fs0,path="+share+",security_model=none", "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=share",
		"-device", "virtio-serial-pci", "-chardev", "file,id=ch0,path="+port, "-device", "virtserialport,chardev=ch0,name=agent.0",
	)
	start := time.Now()
	outb, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	consoleOut, _ := os.ReadFile(console)
	portOut, _ := os.ReadFile(port)
	t.Logf("QEMU ran %.2fs\nconsole:\n%s\nport: %s", elapsed.Seconds(), consoleOut, portOut)
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, outb)
	}
	want := "GUESTIMAGE-BOOT loaded=" + strconv.Itoa(modules) + " failed=[] 9p=true virtiofs=true share=\"hello from the host\""
	if !bytes.Contains(consoleOut, []byte(want)) {
		t.Fatalf("console lacks %q", want)
	}
	if !bytes.Contains(portOut, []byte(want)) {
		t.Fatalf("virtio-serial port lacks %q", want)
	}
	if elapsed > 30*time.Second {
		// A loaded CI machine is no reason to fail; the lines above are.
		t.Logf("WARNING: boot took %.1fs, more than the 30s budget", elapsed.Seconds())
	}
}
