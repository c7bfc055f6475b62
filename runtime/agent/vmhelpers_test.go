package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// This file boots the real agent in QEMU (TCG) the way the reference floor
// does: Debian's kernel as a PVH vmlinux with qboot, an initrd holding the
// agent as /init and the virtio/9p modules, a busybox rootfs over 9p.

const (
	qemuBinary = "qemu-system-x86_64"
	qbootROM   = "/usr/share/qemu/qboot.rom"
	busybox    = "/bin/busybox"
)

// moduleOrder is the load order of the modules the test VM needs
// (dependencies first), as in the reference floor.
var moduleOrder = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"virtio_console", "netfs", "fscache", "9pnet", "9pnet_virtio", "9p",
}

// kernelParams are the reference floor's, plus the agent's debug switch.
const kernelParams = "console=ttyS0 panic=-1 quiet tsc=reliable no_timer_check rcupdate.rcu_expedited=1 " +
	"i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests " +
	"pci=lastbus=0 nomodeset agent.debug=1"

// needVM skips (or, under KATA_E2E_REQUIRED=1, fails) when the machine
// cannot run the VM test.
func needVM(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath(qemuBinary); err != nil {
		missing = append(missing, qemuBinary+" (apt-get install qemu-system-x86)")
	}
	if _, err := os.Stat(qbootROM); err != nil {
		missing = append(missing, qbootROM+" (apt-get install qemu-system-x86)")
	}
	if !staticBusybox() {
		missing = append(missing, "a static "+busybox+" (apt-get install busybox-static)")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		missing = append(missing, "dpkg-deb")
	}
	if len(missing) > 0 {
		skipOrFail(t, "VM TEST NOT RUN: missing %s", strings.Join(missing, ", "))
	}
	if testing.Short() {
		t.Skip("VM test skipped in -short mode")
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("KATA_E2E_REQUIRED") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// staticBusybox reports whether busybox is an ELF file without an
// interpreter: the rootfs has no libc.
func staticBusybox() bool {
	f, err := elf.Open(busybox)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func testCacheDir() string {
	if d := os.Getenv("KATA_TEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kata-deploy/test"
}

// kernelPackage is the versioned package linux-image-amd64 depends on.
func kernelPackage() string {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1]
		}
	}
	return ""
}

// kernelDeb finds the kernel package in the cache, downloading it if absent.
func kernelDeb(t *testing.T) string {
	t.Helper()
	dir := testCacheDir()
	pkg := kernelPackage()
	pattern := "linux-image-*-amd64_*.deb"
	if pkg != "" {
		pattern = pkg + "_*.deb"
	}
	if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) > 0 {
		sort.Strings(m)
		return m[len(m)-1]
	}
	if pkg == "" {
		skipOrFail(t, "VM TEST NOT RUN: no kernel package in %s and apt-cache cannot name one", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		skipOrFail(t, "VM TEST NOT RUN: apt-get download %s: %v\n%s", pkg, err, out)
	}
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		t.Fatalf("apt-get download %s left no %s in %s", pkg, pattern, dir)
	}
	return m[0]
}

// kernelAssets returns a vmlinux and a directory of the modules the test
// VM needs (<name>.ko), cached next to the package: extracting the whole
// package takes 400 MB, kept only while the assets are made.
func kernelAssets(t *testing.T) (vmlinux, modDir string) {
	t.Helper()
	deb := kernelDeb(t)
	base := filepath.Join(filepath.Dir(deb), "agent-test", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	vmlinux, modDir = filepath.Join(base, "vmlinux"), filepath.Join(base, "modules")
	if _, err := os.Stat(vmlinux); err == nil {
		return vmlinux, modDir
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	tmpMods, err := os.MkdirTemp(base, "modules-")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, m := range moduleOrder {
		want[m+".ko"] = true
	}
	filepath.WalkDir(filepath.Join(root, "lib", "modules"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && want[d.Name()] {
			if data, err := os.ReadFile(p); err == nil {
				os.WriteFile(filepath.Join(tmpMods, d.Name()), data, 0o644)
			}
		}
		return nil
	})
	os.RemoveAll(modDir)
	if err := os.Rename(tmpMods, modDir); err != nil {
		t.Fatal(err)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuz) == 0 {
		t.Fatalf("no boot/vmlinuz-* in %s", deb)
	}
	data, err := os.ReadFile(vmlinuz[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("\xfd7zXZ\x00"))
	if i < 0 {
		t.Fatalf("%s has no xz payload", vmlinuz[0])
	}
	// The kernel's xz payload uses the x86 BCJ filter, which
	// github.com/ulikunitz/xz cannot decode; the test uses xz(1) instead
	// (packaging/guestimage has a Go decoder for production).
	cmd := exec.Command("xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin = bytes.NewReader(data[i:])
	elf, err := cmd.Output()
	if err != nil {
		skipOrFail(t, "VM TEST NOT RUN: decompress the kernel with xz(1) (apt-get install xz-utils): %v", err)
	}
	if !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		t.Fatalf("the decompressed kernel is not an ELF file")
	}
	// vmlinux is written last: its presence means the cache is complete.
	tmp := vmlinux + fmt.Sprintf(".tmp%d", os.Getpid())
	if err := os.WriteFile(tmp, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, vmlinux); err != nil {
		t.Fatal(err)
	}
	return vmlinux, modDir
}

// buildAgent compiles the agent statically.
func buildAgent(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "kata-agent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -X main.version=vmtest", "-o", out,
		"github.com/kata-deploy/kata-deploy/cmd/kata-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, b)
	}
	return out
}

// buildInitrd writes a newc archive: /init, the modules and their list.
func buildInitrd(t *testing.T, path, agentBin, modDir string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := cpio.NewWriter(f)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"dev", "etc", "etc/kata-deploy", "lib", "lib/modules", "proc", "run", "sys", "tmp"} {
		if err := w.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(name string, data []byte, mode cpio.FileMode) {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	var list strings.Builder
	for _, m := range moduleOrder {
		data, err := os.ReadFile(filepath.Join(modDir, m+".ko"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // built into this kernel
		}
		if err != nil {
			t.Fatal(err)
		}
		add("lib/modules/"+m+".ko", data, 0o644)
		list.WriteString(m + "\n")
	}
	add("etc/kata-deploy/modules.load", []byte(list.String()), 0o644)
	agent, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	add("init", agent, 0o755)
	if err := w.Close(); err != nil {
		t.Fatal(err)
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
		"-accel", "tcg", "-M", "q35", "-bios", qbootROM, "-m", "256", "-smp", "1",
		"-display", "none", "-no-reboot", "-nodefaults", "-serial", "file:" + console,
		"-kernel", vmlinux, "-initrd", initrd, "-append", kernelParams,
		"-fsdev", "local,id=fs0,path=" + share + ",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=rootfs",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=agent.0",
	}
	cmd := exec.Command(qemuBinary, args...)
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
