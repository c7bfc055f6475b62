package hypervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// The VM tests boot Debian's kernel under QEMU with a tiny /init
// (testdata/guestinit) that reports over agent.0. They need root, QEMU and
// Debian's kernel package (cached in $KATA_TEST_CACHE/kernel, fetched with
// apt-get download the first time).

// missing skips, or fails when the CI demands that nothing be skipped.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("KATA_E2E_REQUIRED") == "1" {
		t.Fatalf("KATA_E2E_REQUIRED=1 but %s", why)
	}
	t.Skip("SKIP: " + why)
}

func testCache() string {
	if d := os.Getenv("KATA_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kata-deploy/test"
}

// kernelDeb finds Debian's kernel package in the test cache or downloads it.
func kernelDeb(ctx context.Context, t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testCache(), "kernel")
	for _, d := range []string{dir, testCache()} {
		if debs, _ := filepath.Glob(filepath.Join(d, "linux-image-*.deb")); len(debs) > 0 {
			return debs[len(debs)-1]
		}
	}
	deb, err := guestimage.FetchDebianKernel(ctx, dir)
	if err != nil {
		missing(t, fmt.Sprintf("no Debian kernel package in %s and apt-get download failed: %v", dir, err))
	}
	return deb
}

// baseImage returns a vmlinux and an initrd holding the modules the tests
// need, built once per kernel package and cached: scanning the package
// takes most of a minute under load.
func baseImage(ctx context.Context, t *testing.T) (vmlinux, initrd string) {
	t.Helper()
	deb := kernelDeb(ctx, t)
	dir := filepath.Join(testCache(), "hypervisor-guest", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	vmlinux, initrd = filepath.Join(dir, guestimage.VmlinuxName), filepath.Join(dir, guestimage.InitrdName)
	if _, err := os.Stat(filepath.Join(dir, guestimage.ManifestName)); err == nil {
		return vmlinux, initrd
	}
	// Any static binary will do as /init: each test appends its own.
	t.Logf("building the test guest image from %s into %s (once)", deb, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := guestimage.Build(ctx, guestimage.Options{
		KernelDeb: deb, AgentBinary: buildGuestInit(t), OutDir: dir,
		Modules: []string{"virtio_pci", "virtio_console", "9pnet_virtio", "9p", "virtiofs"},
	})
	if err != nil {
		t.Fatalf("building the guest image: %v", err)
	}
	return vmlinux, initrd
}

func buildGuestInit(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/guestinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the guest init: %v\n%s", err, b)
	}
	return out
}

// guest is what every VM test boots.
type guest struct {
	kernel, base, initrd, firmware, qemu, virtiofsd string
}

// withInit returns an initrd that is the base image with init as /init:
// the kernel unpacks concatenated cpio archives in order, so the later
// /init replaces the placeholder.
func (g guest) withInit(t *testing.T, init []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := guestimage.WriteInitrd(&buf, []guestimage.File{{Path: guestimage.InitPath, Mode: 0o755, Data: init}}); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(g.base)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	if err := os.WriteFile(initrd, append(base, buf.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return initrd
}

func requireGuest(t *testing.T) guest {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: boots VMs (not with -short)")
	}
	if os.Geteuid() != 0 {
		missing(t, "VM tests need root (network namespaces, virtiofsd)")
	}
	qemuPath, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing(t, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vmlinux, base := baseImage(ctx, t)
	initBin, err := os.ReadFile(buildGuestInit(t))
	if err != nil {
		t.Fatal(err)
	}
	g := guest{kernel: vmlinux, base: base, qemu: qemuPath, virtiofsd: "/usr/lib/qemu/virtiofsd"}
	g.initrd = g.withInit(t, initBin)
	if _, err := os.Stat("/usr/share/qemu/qboot.rom"); err == nil {
		g.firmware = "/usr/share/qemu/qboot.rom"
	}
	return g
}

func (g guest) config(t *testing.T, id string, shares []Share, params ...string) Config {
	return Config{
		ID: id, QEMUPath: g.qemu, Kernel: g.kernel, Initrd: g.initrd, Firmware: g.firmware,
		MachineType: "q35", Accelerator: AccelTCG, VCPUs: 1, MemoryMiB: 256,
		StateDir: filepath.Join(t.TempDir(), "vm"), Shares: shares, VirtiofsDaemon: g.virtiofsd,
		KernelParams: params, Logf: t.Logf,
	}
}

// shareDir makes a directory holding hello.txt.
func shareDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func start(t *testing.T, cfg Config) *VM {
	t.Helper()
	vm, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = vm.Stop(context.Background())
		_ = Cleanup(cfg.StateDir)
	})
	return vm
}

// readAgent returns the first line the guest writes to agent.0.
func readAgent(t *testing.T, vm *VM, timeout time.Duration) string {
	t.Helper()
	conn, err := net.Dial("unix", vm.AgentSocket)
	if err != nil {
		t.Fatalf("connect to the agent socket: %v", err)
	}
	defer conn.Close()
	t0 := time.Now()
	_ = conn.SetReadDeadline(t0.Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(vm.BootError(fmt.Errorf("reading agent.0: %w", err)))
	}
	t.Logf("the guest reported after %s", time.Since(t0).Round(time.Millisecond))
	return strings.TrimSpace(line)
}

func netnsOf(t *testing.T, pid string) string {
	t.Helper()
	ns, err := os.Readlink("/proc/" + pid + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// assertGone checks that Stop/Cleanup left nothing behind.
func assertGone(t *testing.T, vm *VM, others ...int) {
	t.Helper()
	for _, pid := range append([]int{vm.PID}, others...) {
		if alive(pid) {
			t.Errorf("pid %d still runs", pid)
		}
	}
	if _, err := os.Stat(vm.StateDir); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind: %v", vm.StateDir, err)
	}
}

// virtiofsdPid returns the pid of the virtiofsd serving share i.
func virtiofsdPid(t *testing.T, vm *VM, i int) int {
	t.Helper()
	pid, _, err := readIdentity(vm.layout.vfsPid(i))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestVM(t *testing.T) {
	g := requireGuest(t)
	const bootTimeout = 60 * time.Second

	t.Run("9p boot report and power off", func(t *testing.T) {
		sh := shareDir(t, "from-9p")
		vm := start(t, g.config(t, "vm-9p", []Share{{Tag: "share0", HostPath: sh, Type: Share9P}},
			"kdtest=hello", "kdtest.fs=9p:share0"))
		if vm.PID <= 0 {
			t.Fatalf("pid %d", vm.PID)
		}
		if netnsOf(t, fmt.Sprint(vm.PID)) == netnsOf(t, "self") {
			t.Error("QEMU runs in the host's network namespace, want a new one")
		}
		if got := readAgent(t, vm, bootTimeout); got != "hello share0=from-9p" {
			t.Fatalf("agent.0 said %q", got)
		}
		select {
		case <-vm.Done():
		case <-time.After(30 * time.Second):
			t.Fatal(vm.BootError(fmt.Errorf("QEMU still runs 30s after the guest powered off")))
		}
		if err := vm.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		assertGone(t, vm)
		if err := vm.Stop(context.Background()); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
	})

	t.Run("virtio-fs boot report and power off", func(t *testing.T) {
		sh := shareDir(t, "from-virtiofs")
		vm := start(t, g.config(t, "vm-vfs", []Share{{Tag: "share0", HostPath: sh, Type: ShareVirtiofs}},
			"kdtest=hello", "kdtest.fs=virtiofs:share0"))
		vfsd := virtiofsdPid(t, vm, 0)
		if got := readAgent(t, vm, bootTimeout); got != "hello share0=from-virtiofs" {
			t.Fatalf("agent.0 said %q", got)
		}
		select {
		case <-vm.Done():
		case <-time.After(30 * time.Second):
			t.Fatal(vm.BootError(fmt.Errorf("QEMU still runs 30s after the guest powered off")))
		}
		if err := vm.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		assertGone(t, vm, vfsd)
	})

	t.Run("pause resume and stop a running VM in a given netns", func(t *testing.T) {
		holder := exec.Command(os.Args[0], "-test.run=^$")
		holder.Env = append(os.Environ(), envSleeper+"=1")
		holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
		cfg := g.config(t, "vm-stop", nil, "kdtest=wait")
		cfg.NetNSPath = fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
		vm := start(t, cfg)
		if got, want := netnsOf(t, fmt.Sprint(vm.PID)), netnsOf(t, fmt.Sprint(holder.Process.Pid)); got != want {
			t.Errorf("QEMU netns %s, want %s", got, want)
		}
		ctx := context.Background()
		if err := vm.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := vm.Status(ctx); err != nil || st != "paused" {
			t.Fatalf("status after Pause: %q %v", st, err)
		}
		if err := vm.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := vm.Status(ctx); err != nil || st != "running" {
			t.Fatalf("status after Resume: %q %v", st, err)
		}
		t0 := time.Now()
		if err := vm.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d > quitGrace {
			t.Errorf("Stop took %s: QMP quit did not work, QEMU was killed", d)
		}
		select {
		case <-vm.Done():
		default:
			t.Error("Done not closed after Stop")
		}
		assertGone(t, vm)
	})

	t.Run("a failed boot is diagnosable from the console", func(t *testing.T) {
		cfg := g.config(t, "vm-panic", nil)
		cfg.Initrd = g.withInit(t, []byte("not an executable"))
		vm := start(t, cfg)
		select {
		case <-vm.Done():
		case <-time.After(bootTimeout):
			t.Fatal(vm.BootError(fmt.Errorf("QEMU still runs although the guest has no init")))
		}
		err := vm.BootError(errors.New("the agent did not answer"))
		if msg := err.Error(); !strings.Contains(msg, "the agent did not answer") || !strings.Contains(msg, "Kernel panic") {
			t.Fatalf("boot error lacks the kernel panic: %v", err)
		}
		t.Logf("boot error: %v", err)
	})

	t.Run("cleanup after the shim died", func(t *testing.T) {
		sh := shareDir(t, "x")
		cfg := g.config(t, "vm-orphan", []Share{
			{Tag: "fs9p", HostPath: sh, Type: Share9P},
			{Tag: "fsvfs", HostPath: sh, Type: ShareVirtiofs},
		}, "kdtest=wait")
		vm := start(t, cfg)
		vfsd := virtiofsdPid(t, vm, 1)
		// The shim is gone: only the state directory is left to go by.
		if err := Cleanup(cfg.StateDir); err != nil {
			t.Fatal(err)
		}
		select {
		case <-vm.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("QEMU survived Cleanup")
		}
		assertGone(t, vm, vfsd)
		if err := Cleanup(cfg.StateDir); err != nil {
			t.Fatalf("second Cleanup: %v", err)
		}
	})
}
