package hypervisor

import (
	"bufio"
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

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// The VM tests boot the test guest image (internal/testguest) under QEMU
// with a tiny /init (testdata/guestinit) in place of the agent; it reports
// over agent.0. They need root and QEMU.

// guest is what every VM test boots.
type guest struct {
	image                                     *testguest.Image
	kernel, initrd, firmware, qemu, virtiofsd string
}

// withInit returns the test image's initrd with init as its /init.
func (g guest) withInit(t *testing.T, init []byte) string {
	t.Helper()
	return g.image.WithInit(t, init)
}

func requireGuest(t *testing.T) guest {
	t.Helper()
	testreq.Short(t, "boots VMs")
	testreq.Root(t) // network namespaces, virtiofsd
	g := guest{qemu: testreq.QEMU(t), firmware: testreq.QbootROM, virtiofsd: "/usr/lib/qemu/virtiofsd"}
	g.image = testguest.Get(t)
	g.kernel = g.image.Vmlinux
	g.initrd = g.withInit(t, testguest.BuildInit(t, "./testdata/guestinit"))
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
		// Under TCG QEMU runs without transparent huge pages (confine.go).
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", vm.PID)); err != nil {
			t.Error(err)
		} else if strings.Contains(string(st), "THP_enabled:") && !strings.Contains(string(st), "THP_enabled:\t0\n") {
			t.Errorf("QEMU under TCG has transparent huge pages on:\n%s", st)
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

	// QEMU keeps only the capabilities its 9p server needs (confine.go):
	// what a root container does to its rootfs must still work.
	t.Run("9p file operations of a root guest", func(t *testing.T) {
		sh := shareDir(t, "ops")
		other := filepath.Join(sh, "other.txt")
		if err := os.WriteFile(other, []byte("host\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 4321, 4321); err != nil {
			t.Fatal(err)
		}
		vm := start(t, g.config(t, "vm-ops", []Share{{Tag: "share0", HostPath: sh, Type: Share9P}},
			"kdtest=hello", "kdtest.fs=9p:share0", "kdtest.ops=1"))
		if got := readAgent(t, vm, bootTimeout); got != "hello share0=ops ops=ok" {
			t.Fatalf("agent.0 said %q", got)
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(sh, "made"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o750 {
			t.Errorf("made: uid %d gid %d mode %o (%v), want 1234 5678 750", st.Uid, st.Gid, st.Mode&0o7777, err)
		}
		if b, _ := os.ReadFile(other); string(b) != "written by guest root\n" {
			t.Errorf("other.txt holds %q", b)
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
