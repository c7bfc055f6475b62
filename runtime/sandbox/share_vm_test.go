package sandbox

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// TestVMCannotWriteReadOnlyShare boots a guest on a real share whose guest-side mount is
// read-write (as root in a --privileged container gets by remounting): writes into a read-only
// bind and a read-only rootfs fail on the host, a read-write bind still takes them.
func TestVMCannotWriteReadOnlyShare(t *testing.T) {
	testreq.Short(t, "boots a VM")
	testreq.Root(t)
	qemu := testreq.QEMU(t)
	img := testguest.Get(t)
	initrd := img.WithInit(t, testguest.BuildInit(t, "../hypervisor/testdata/guestinit"))

	src := t.TempDir()
	for _, d := range []string{"rootfs", "ro", "rw"} {
		os.Mkdir(filepath.Join(src, d), 0o755)
		os.WriteFile(filepath.Join(src, d, "f"), []byte("original\n"), 0o644)
	}
	spec := &specs.Spec{
		Root: &specs.Root{Path: filepath.Join(src, "rootfs"), Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/ro", Type: "bind", Source: filepath.Join(src, "ro"), Options: []string{"rbind", "ro"}},
			{Destination: "/rw", Type: "bind", Source: filepath.Join(src, "rw"), Options: []string{"rbind"}},
		},
	}
	state := t.TempDir()
	dir := filepath.Join(state, "shared")
	s, _, err := share(dir, filepath.Join(state, "shared.list"), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.unshare() })

	ctx := context.Background()
	vm, err := hypervisor.Start(ctx, hypervisor.Config{
		ID: "share-ro", QEMUPath: qemu, Kernel: img.Vmlinux, Initrd: initrd, Firmware: testreq.QbootROM,
		MachineType: "q35", Accelerator: hypervisor.AccelTCG, VCPUs: 1, MemoryMiB: 256,
		StateDir: filepath.Join(state, "vm"),
		Shares:   []hypervisor.Share{{Tag: "share0", HostPath: dir, Type: hypervisor.Share9P}},
		KernelParams: []string{"kdtest=wait", "kdtest.fs=9p:share0",
			"kdtest.write=share0/m0/f", "kdtest.write=share0/m0/new", "kdtest.write=share0/rootfs/f",
			"kdtest.write=share0/m1/f"},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background()) })
	conn, err := net.Dial("unix", vm.AgentSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	report, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(vm.BootError(err))
	}
	t.Logf("guest: %s", strings.TrimSpace(report))
	for _, p := range []string{"ro/f", "rootfs/f"} {
		if data, _ := os.ReadFile(filepath.Join(src, p)); string(data) != "original\n" {
			t.Errorf("the guest changed the read-only %s on the host: %q", p, data)
		}
	}
	if _, err := os.Stat(filepath.Join(src, "ro", "new")); !os.IsNotExist(err) {
		t.Errorf("the guest created a file in the read-only bind on the host: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(src, "rw", "f")); string(data) != "pwned\n" {
		t.Errorf("the read-write bind did not take the guest's write: %q (report %q)", data, report)
	}
}
