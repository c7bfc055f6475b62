package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// floorModules are the guest kernel modules the floor needs, in load order: the virtio PCI
// transport, the virtio-serial console, and 9p over virtio with its libraries. Nothing else
// (no block, net, virtio-fs or vsock).
var floorModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"virtio_console", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
}

// floorParams are the guest kernel parameters of the floor: a console kept quiet, no reboot,
// and the usual set that skips probing and self-tests a VM does not need.
var floorParams = []string{
	"console=ttyS0", "quiet", "panic=-1", "reboot=k", "tsc=reliable", "no_timer_check",
	"rcupdate.rcu_expedited=1", "i8042.direct=1", "i8042.dumbkbd=1", "i8042.nopnp=1",
	"i8042.noaux=1", "noreplace-smp", "cryptomgr.notests", "pci=lastbus=0", "nomodeset",
}

const (
	floorTag  = "floor"
	floorPort = "floor.0"
)

// floorVM is the bare VM the benchmark boots without the runtime: the same QEMU, firmware,
// machine, kernel, vCPUs and memory as the runtime's configuration, the fewest devices a VM
// container needs (a serial console, virtio-serial, one 9p share) and a minimal /init.
type floorVM struct {
	QEMU, Firmware, Machine, Accel string
	Kernel, Initrd                 string
	VCPUs, MemoryMiB               int
	Share, Socket, Console         string
	Command                        []string // run in the share, e.g. /bin/busybox true
}

// args is the QEMU command line, written out: nothing of the runtime's hypervisor package.
func (f *floorVM) args() []string {
	cpu := "qemu64" // under TCG it boots faster than "max"
	if f.Accel == "kvm" {
		cpu = "host"
	}
	params := append(append([]string{}, floorParams...),
		"floor.modules="+strings.Join(floorModules, ","), "floor.tag="+floorTag,
		"floor.port="+floorPort, "floor.cmd="+strings.Join(f.Command, ","))
	return []string{
		"-name", "floor", "-no-user-config", "-nodefaults", "-nographic", "-no-reboot",
		"-machine", f.Machine + ",accel=" + f.Accel, "-cpu", cpu,
		"-smp", strconv.Itoa(f.VCPUs), "-m", strconv.Itoa(f.MemoryMiB) + "M",
		"-bios", f.Firmware, "-kernel", f.Kernel, "-initrd", f.Initrd,
		"-append", strings.Join(params, " "),
		"-chardev", "file,id=console0,path=" + f.Console, "-device", "isa-serial,chardev=console0",
		"-device", "virtio-serial-pci,id=vserial0",
		// QEMU connects to the benchmark's socket: the report is read however early it is written.
		"-chardev", "socket,id=port0,path=" + f.Socket,
		"-device", "virtserialport,bus=vserial0.0,chardev=port0,name=" + floorPort,
		"-fsdev", "local,id=fs0,path=" + f.Share + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=" + floorTag,
	}
}

// run boots the floor VM, reads the command's exit status from the guest and waits for QEMU to
// exit (the guest powers off).
func (f *floorVM) run(ctx context.Context) error {
	_ = os.Remove(f.Socket)
	ln, err := net.Listen("unix", f.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, f.QEMU, f.args()...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting QEMU: %w", err)
	}
	line, readErr := readReport(ctx, ln)
	waitErr := cmd.Wait()
	switch {
	case readErr != nil:
		return fmt.Errorf("the floor VM gave no report (%w): QEMU %v: %s; console: %s", readErr, waitErr, stderr.Bytes(), tail(f.Console))
	case waitErr != nil:
		return fmt.Errorf("QEMU: %w: %s", waitErr, stderr.Bytes())
	case line != "exit=0":
		return fmt.Errorf("the floor VM reported %q; console: %s", line, tail(f.Console))
	}
	return nil
}

func readReport(ctx context.Context, ln net.Listener) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer conn.Close()
		line, err := bufio.NewReader(conn).ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-ch:
		return r.line, r.err
	case <-ctx.Done():
		ln.Close()
		return "", ctx.Err()
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// newFloorVM builds the floor's /init, appends it to the test image's initrd (the kernel unpacks
// concatenated archives in order, so it replaces the agent; the modules stay) and fills a share
// with a static busybox.
func newFloorVM(ctx context.Context, dir string, img imageFiles, h hostVM) (*floorVM, error) {
	init, err := testguest.BuildStatic(ctx, dir, "floorinit", "github.com/kata-deploy/kata-deploy/bench/startup/floorinit")
	if err != nil {
		return nil, err
	}
	initData, err := os.ReadFile(init)
	if err != nil {
		return nil, err
	}
	var extra bytes.Buffer
	if err := guestimage.WriteInitrd(&extra, []guestimage.File{{Path: guestimage.InitPath, Mode: 0o755, Data: initData}}); err != nil {
		return nil, err
	}
	base, err := os.ReadFile(img.Initrd)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "floor-initrd.img")
	if err := os.WriteFile(initrd, append(base, extra.Bytes()...), 0o600); err != nil {
		return nil, err
	}
	share := filepath.Join(dir, "floor-share")
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("the floor runs a static busybox: apt-get install busybox-static: %w", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(share, "bin"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(share, "bin", "busybox"), data, 0o755); err != nil {
		return nil, err
	}
	return &floorVM{
		QEMU: h.QEMU, Firmware: h.Firmware, Machine: h.Machine, Accel: h.Accel,
		Kernel: img.Vmlinux, Initrd: initrd, VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB,
		Share: share, Socket: filepath.Join(dir, "floor.sock"), Console: filepath.Join(dir, "floor-console.log"),
		Command: []string{"/bin/busybox", "true"},
	}, nil
}

// imageFiles is the guest image the runtime boots.
type imageFiles struct{ Vmlinux, Initrd string }

// hostVM is what the runtime's configuration says about its VMs, which the floor copies.
type hostVM struct {
	QEMU, Firmware, Machine, Accel string
	VCPUs, MemoryMiB               int
}
