package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// This file boots the real agent in QEMU (TCG) the way the runtime does: the
// test guest image (internal/testguest: Debian's kernel as a PVH vmlinux
// booted with qboot, an initrd holding the agent as /init and its modules),
// a busybox rootfs over 9p.

const busybox = "/bin/busybox"

// kernelParams are the runtime's, plus the agent's debug switch.
const kernelParams = "console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check rcupdate.rcu_expedited=1 " +
	"i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests " +
	"pci=lastbus=0 nomodeset agent.debug=1"

// needVM skips (or, under KATA_E2E_REQUIRED=1, fails) when the machine
// cannot run the VM test.
func needVM(t *testing.T) {
	t.Helper()
	testreq.Short(t, "boots a VM")
	testreq.Root(t)
	testreq.QEMU(t)
	needStaticBusybox(t)
}

// needStaticBusybox requires a busybox without an ELF interpreter: the
// rootfs has no libc.
func needStaticBusybox(t *testing.T) {
	t.Helper()
	f, err := elf.Open(busybox)
	if err != nil {
		testreq.Skipf(t, "no static %s (apt-get install busybox-static): %v", busybox, err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			testreq.Skipf(t, "%s is dynamically linked (apt-get install busybox-static)", busybox)
		}
	}
}

// buildRootfs makes a busybox rootfs with some test data.
func buildRootfs(t *testing.T, dir string) (blobSum [32]byte) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "data", "extra"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", applet))
		}
	}
	files := map[string]string{
		"etc/passwd":      "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":       "root:x:0:\nwheel:x:10:\nuser:x:1000:\n",
		"extra/hosts":     "127.0.0.1 localhost from-a-file-bind\n",
		"bin/not-exec.sh": "#!/bin/sh\necho should not run\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A MiB of output that is not all the same byte.
	blob := make([]byte, 1<<20)
	for i := range blob {
		blob[i] = byte(i*7 + i/251)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(blob)
}

// testVM is one running QEMU with a connected client.
type testVM struct {
	sock    string
	cmd     *exec.Cmd
	exited  chan error
	console string
	client  *agentproto.Client
	conn    net.Conn
}

func bootVM(t *testing.T, dir, vmlinux, initrd, share string) *testVM {
	t.Helper()
	sock := filepath.Join(dir, "agent.sock")
	console := filepath.Join(dir, "console.log")
	args := []string{
		"-accel", "tcg", "-M", "q35", "-bios", testreq.QbootROM, "-m", "256", "-smp", "1",
		"-display", "none", "-no-reboot", "-nodefaults", "-serial", "file:" + console,
		"-kernel", vmlinux, "-initrd", initrd, "-append", kernelParams,
		"-fsdev", "local,id=fs0,path=" + share + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=rootfs",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=agent.0",
	}
	cmd := exec.Command(testreq.QEMUBinary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	vm := &testVM{sock: sock, cmd: cmd, exited: make(chan error, 1), console: console}
	go func() { vm.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-vm.exited
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("qemu stderr:\n%s\nguest console:\n%s", stderr.String(), b)
		}
	})
	vm.connect(t)
	return vm
}

// connect dials QEMU's agent socket (retrying while QEMU starts) and makes
// a new client, closing the previous one.
func (vm *testVM) connect(t *testing.T) {
	t.Helper()
	if vm.client != nil {
		vm.client.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("unix", vm.sock)
		if err == nil {
			vm.conn = conn
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to qemu's agent socket: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := agentproto.NewClient(vm.conn)
	if err != nil {
		t.Fatal(err)
	}
	vm.client = c
}

// waitExit waits for QEMU to exit by itself.
func (vm *testVM) waitExit(d time.Duration) error {
	select {
	case err := <-vm.exited:
		vm.exited <- err // for the cleanup
		return err
	case <-time.After(d):
		return errors.New("qemu still running")
	}
}

// result is what one container run produced.
type result struct {
	stdout, stderr string
	status         int
}

// run creates a container, attaches its stdio, starts it, feeds stdin and
// waits for its exit status and complete output.
func run(ctx context.Context, t *testing.T, c *agentproto.Client, req agentproto.CreateContainerRequest, stdin []byte) result {
	t.Helper()
	if err := c.CreateContainer(ctx, req); err != nil {
		t.Fatalf("create %s: %v", req.ID, err)
	}
	return startAndWait(ctx, t, c, req.ID, "", req.Spec.Process.Terminal, stdin, nil)
}

// startAndWait attaches, starts and collects one process.
func startAndWait(ctx context.Context, t *testing.T, c *agentproto.Client, id, execID string, terminal bool, stdin []byte, afterStart func()) result {
	t.Helper()
	type out struct {
		data []byte
		err  error
	}
	collect := func(stream string) chan out {
		ch := make(chan out, 1)
		s, err := c.Stdio(ctx, id, execID, stream)
		if err != nil {
			t.Fatalf("attach %s of %s/%s: %v", stream, id, execID, err)
		}
		go func() {
			b, err := io.ReadAll(s)
			s.Close()
			ch <- out{b, err}
		}()
		return ch
	}
	stdoutCh := collect(agentproto.StreamStdout)
	var stderrCh chan out
	if !terminal {
		stderrCh = collect(agentproto.StreamStderr)
	}
	var in io.ReadWriteCloser
	if stdin != nil {
		var err error
		if in, err = c.Stdio(ctx, id, execID, agentproto.StreamStdin); err != nil {
			t.Fatalf("attach stdin: %v", err)
		}
	}
	if _, err := c.Start(ctx, id, execID); err != nil {
		t.Fatalf("start %s/%s: %v", id, execID, err)
	}
	if in != nil {
		go func() {
			in.Write(stdin)
			in.Close()
		}()
	}
	if afterStart != nil {
		afterStart()
	}
	status, err := c.Wait(ctx, id, execID)
	if err != nil {
		t.Fatalf("wait %s/%s: %v", id, execID, err)
	}
	var r result
	r.status = status
	o := <-stdoutCh
	if o.err != nil {
		t.Fatalf("read stdout: %v", o.err)
	}
	r.stdout = string(o.data)
	if stderrCh != nil {
		e := <-stderrCh
		if e.err != nil {
			t.Fatalf("read stderr: %v", e.err)
		}
		r.stderr = string(e.data)
	}
	return r
}
