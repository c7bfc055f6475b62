package guestimage_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// The tests in this file use Debian's real kernel package and the real agent, through the test
// guest image (internal/testguest), which guestimage.Build makes and which is cached between
// runs. They skip under -short.

func TestRealDebianKernel(t *testing.T) {
	img := testguest.Get(t)
	m := img.Manifest
	t.Logf("kernel %s modules %v", m.KernelVersion, m.Modules)

	t.Run("vmlinux has a PVH entry", func(t *testing.T) {
		vm, err := os.ReadFile(img.Vmlinux)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := guestimage.ValidateVmlinux(vm); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("modules in dependency order", func(t *testing.T) {
		for group, names := range m.Groups {
			checkModuleOrder(t, group, append(slices.Clone(m.Modules), names...))
		}
	})
	t.Run("same sha256 from the unpacked package", func(t *testing.T) { checkSameFromDir(t, img) })
	t.Run("boots under QEMU", func(t *testing.T) {
		bootGuest(t, img.WithInit(t, testguest.BuildInit(t, "./testdata/bootinit")), img.Vmlinux, len(m.Modules)+len(m.OnDemand))
	})
}

// checkModuleOrder checks a group's load order (after the boot modules): every module it needs,
// each after its dependencies.
func checkModuleOrder(t *testing.T, group string, modules []string) {
	t.Helper()
	pos := map[string]int{}
	for i, name := range modules {
		pos[name] = i
	}
	need := map[string][]string{
		"9p":       {"netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "virtio_ring", "virtio_pci"},
		"virtiofs": {"fuse", "virtiofs", "virtio_ring"},
		"vsock":    {"vsock", "vmw_vsock_virtio_transport"},
		"net":      {"virtio_net"},
		"blk":      {"virtio_blk"},
		"fs":       {"ext4", "xfs", "crc32c_generic"},
	}[group]
	if need == nil {
		t.Errorf("unexpected module group %s: %v", group, modules)
	}
	for _, name := range need {
		if _, ok := pos[name]; !ok {
			t.Errorf("group %s: %s missing from %v", group, name, modules)
		}
	}
	before := [][2]string{{"netfs", "9p"}, {"fscache", "9p"}, {"9pnet", "9p"}, {"netfs", "fscache"},
		{"9pnet", "9pnet_virtio"}, {"virtio_ring", "9pnet_virtio"}, {"fuse", "virtiofs"}, {"vsock", "vmw_vsock_virtio_transport"},
		{"virtio_pci", "virtio_net"}, {"jbd2", "ext4"}}
	for _, b := range before {
		i, okA := pos[b[0]]
		j, okB := pos[b[1]]
		if okA && okB && i >= j {
			t.Errorf("group %s: %s must load before %s: %v", group, b[0], b[1], modules)
		}
	}
}

// checkSameFromDir builds the image again from the unpacked package (a vmlinuz and a modules
// directory) and wants the same bytes as from the .deb.
func checkSameFromDir(t *testing.T, img *testguest.Image) {
	testreq.Command(t, "dpkg-deb")
	root := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", img.KernelDeb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v: %s", err, b)
	}
	m := img.Manifest
	m2, err := guestimage.Build(context.Background(), guestimage.Options{
		Vmlinuz:     filepath.Join(root, "boot", "vmlinuz-"+m.KernelVersion),
		ModulesDir:  filepath.Join(root, "lib", "modules", m.KernelVersion),
		AgentBinary: img.Agent, OutDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Artifacts[guestimage.VmlinuxName] != m.Artifacts[guestimage.VmlinuxName] || m2.Artifacts[guestimage.InitrdName] != m.Artifacts[guestimage.InitrdName] {
		t.Fatalf("artifacts differ:\nfrom .deb: %+v\nfrom dir:  %+v", m.Artifacts, m2.Artifacts)
	}
	if !slices.Equal(m2.Modules, m.Modules) {
		t.Fatalf("modules differ: %v vs %v", m2.Modules, m.Modules)
	}
}

// bootGuest boots the image with QEMU (TCG, qboot, PVH vmlinux) and checks
// the test init's report: every module loaded, 9p mounted, virtio-serial
// port found.
func bootGuest(t *testing.T, initrd, vmlinux string, modules int) {
	qemu := testreq.QEMU(t)
	work := t.TempDir()
	share := filepath.Join(work, "share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "hello.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(work, "console.txt")
	port := filepath.Join(work, "port.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-M", "q35", "-bios", testreq.QbootROM, "-m", "256", "-smp", "1",
		"-display", "none", "-no-reboot", "-nodefaults", "-no-user-config",
		"-serial", "file:"+console,
		"-kernel", vmlinux, "-initrd", initrd,
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
