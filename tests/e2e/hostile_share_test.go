package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// The VM as a boundary against a hostile guest, checked from the host side: root in the guest (a
// --privileged container) undoes what the guest kernel enforces and tries to reach the host
// through the share, the console and the network namespace.

// hsName returns a unique container name for a test.
func hsName(t *testing.T, what string) string {
	t.Helper()
	return fmt.Sprintf("hs-%s-%d", what, time.Now().UnixNano()%1e9)
}

// containerID returns the full ID of a container: the sandbox's state directory is named after it.
func containerID(t *testing.T, name string) string {
	t.Helper()
	res := docker(t, "", "inspect", "-f", "{{.Id}}", name)
	if res.code != 0 {
		t.Fatalf("docker inspect %s: %s", name, res.stderr)
	}
	return strings.TrimSpace(res.stdout)
}

// TestHostileShareReadOnlyVolume: a privileged kata container remounts its :ro volume read-write
// and writes to it; the host file is unchanged and nothing is created.
func TestHostileShareReadOnlyVolume(t *testing.T) {
	requireKata(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("original\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--privileged", "-v", dir+":/data:ro", "-v", rw+":/rw", "busybox", "sh", "-c",
		"mount -o remount,rw /data && echo remounted; echo pwned > /data/f; echo pwned > /data/new; echo kept > /rw/f; cat /data/f")
	t.Logf("guest: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	if !strings.Contains(res.stdout, "remounted") {
		t.Errorf("the guest could not remount its view read-write (stdout %q, stderr %q): the test proves nothing", res.stdout, res.stderr)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(data) != "original\n" {
		t.Errorf("the host file behind the :ro volume now holds %q (%v)", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the guest created a file in the :ro volume on the host: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(rw, "f")); err != nil || string(data) != "kept\n" {
		t.Errorf("a read-write volume next to it is no longer writable: %q, %v", data, err)
	}
}

// TestHostileShareReadOnlyRootfs: the same against a --read-only rootfs, checked with docker diff
// (the host's view of the container's writable layer).
func TestHostileShareReadOnlyRootfs(t *testing.T) {
	requireKata(t)
	name := hsName(t, "rorootfs")
	t.Cleanup(func() { docker(t, "", "rm", "-f", name) })
	res := docker(t, "", "run", "--name", name, "--runtime=kata", "--privileged", "--read-only", "busybox", "sh", "-c",
		"mount -o remount,rw / && echo remounted; echo pwned > /pwned; echo pwned >> /etc/passwd")
	t.Logf("guest: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	if !strings.Contains(res.stdout, "remounted") {
		t.Errorf("the guest could not remount its rootfs read-write (stdout %q, stderr %q): the test proves nothing", res.stdout, res.stderr)
	}
	// The rootfs is read-only on the host, so the mount points the guest needs are made before.
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "f"), []byte("in a new mount point\n"), 0o644)
	if res := docker(t, "", "run", "--rm", "--runtime=kata", "--read-only", "-v", vol+":/brand/new/dir:ro", "-w", "/new/cwd", "busybox", "cat", "/brand/new/dir/f"); res.code != 0 || res.stdout != "in a new mount point\n" {
		t.Errorf("--read-only with a mount point and working directory missing from the image: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	diff := docker(t, "", "diff", name)
	if diff.code != 0 {
		t.Fatalf("docker diff: %s", diff.stderr)
	}
	for _, line := range strings.Split(diff.stdout, "\n") {
		if strings.HasSuffix(line, "/pwned") || strings.HasSuffix(line, "/etc/passwd") {
			t.Errorf("the guest wrote to the --read-only rootfs on the host: docker diff says %q", line)
		}
	}
}

// TestHostileShareSymlinkCrashCleanup: the share holds a symlink to a host mount (and a fifo and a
// non-empty directory), as a guest writing through the 9p/virtio-fs share leaves them; then the
// shim is killed and the container removed. The host mount is intact and nothing of the sandbox
// is left.
func TestHostileShareSymlinkCrashCleanup(t *testing.T) {
	requireKata(t)
	victim := t.TempDir()
	if err := unix.Mount("tmpfs", victim, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(victim, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(victim, "precious"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := hsName(t, "crash")
	detached(t, name, "kata", "busybox", "sleep", "3600")
	id := containerID(t, name)
	stateDir := filepath.Join(testenv.StateDir, id)
	share := filepath.Join(stateDir, "shared")
	// What root in the guest makes in the share root through QEMU (which acts as root on the host).
	for i, p := range []string{"evil", "rootfs.evil"} {
		if err := os.Symlink(victim, filepath.Join(share, p)); err != nil {
			t.Fatalf("planting symlink %d: %v", i, err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(share, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(share, "tree", "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Symlink(victim, filepath.Join(share, "tree", "a", "b", "link"))

	shim := shimPID(t, id)
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the shim (pid %d): %v", shim, err)
	}
	if res := docker(t, "", "rm", "-f", name); res.code != 0 {
		t.Errorf("docker rm -f after the shim died: %s", res.stderr)
	}
	if n, _ := mountsAt(victim); n == 0 {
		t.Errorf("the host mount %s the guest's symlink pointed at was detached", victim)
	}
	if data, err := os.ReadFile(filepath.Join(victim, "precious")); string(data) != "data" {
		t.Errorf("the file in the host mount: %q, %v", data, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := os.Lstat(stateDir)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(stateDir)
			t.Fatalf("the state directory %s is left (%d entries, %v)", stateDir, len(entries), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte(stateDir)) {
		t.Errorf("mounts under %s are left", stateDir)
	}
	if pids := qemuPIDs(id); len(pids) > 0 {
		t.Errorf("QEMU of the container still runs: %v", pids)
	}
}

// TestHostileShareConsoleFlood: a privileged container writes to the guest's serial console
// without end; the console log on the host stays under its cap and still shows the end.
func TestHostileShareConsoleFlood(t *testing.T) {
	requireKata(t)
	name := hsName(t, "flood")
	// ttyS0 is character device 4:64; CAP_MKNOD is enough to make it in the container's /dev.
	detached(t, name, "kata", "--privileged", "busybox", "sh", "-c",
		"mknod /dev/flood c 4 64 && yes 'console flood from the guest, console flood from the guest' > /dev/flood")
	id := containerID(t, name)
	logPath := filepath.Join(testenv.StateDir, id, "vm", "console.log")
	// Long enough for the flood to pass the cap many times over (measured: a TCG guest prints
	// more than 1 MiB in 5 s on ttyS0).
	var size int64
	rotated := false
	for end := time.Now().Add(45 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		size = 0
		for _, p := range []string{logPath, logPath + ".1"} {
			if fi, err := os.Stat(p); err == nil {
				size += fi.Size()
				rotated = rotated || strings.HasSuffix(p, ".1")
			}
		}
		if size > hypervisor.ConsoleLogCap {
			t.Fatalf("the console log holds %d bytes, over its cap of %d", size, hypervisor.ConsoleLogCap)
		}
	}
	t.Logf("console log: %d bytes, rotated: %v", size, rotated)
	if !rotated {
		t.Errorf("the flood never filled half the cap (%d bytes in the log): the test proves nothing", size)
	}
	tail, _ := os.ReadFile(logPath)
	if !bytes.Contains(tail, []byte("console flood from the guest")) {
		t.Errorf("the console log does not show the guest's output: %q", tail[max(0, len(tail)-200):])
	}
}

// TestHostileShareNetworkContainerRefusedBeforeQEMU: --network container:<kata container> is
// refused before any QEMU starts for the new container.
func TestHostileShareNetworkContainerRefusedBeforeQEMU(t *testing.T) {
	requireKata(t)
	other := hsName(t, "netowner")
	detached(t, other, "kata", "busybox", "sleep", "3600")
	name := hsName(t, "netjoin")
	t.Cleanup(func() { docker(t, "", "rm", "-f", name) })
	if res := docker(t, "", "create", "--name", name, "--runtime=kata", "--network", "container:"+other, "busybox", "true"); res.code != 0 {
		t.Fatalf("docker create: %s", res.stderr)
	}
	id := containerID(t, name)
	before := len(qemuPIDs(testenv.StateDir))

	var mu sync.Mutex
	maxAll, seen := before, 0
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			n, own := len(qemuPIDs(testenv.StateDir)), len(qemuPIDs(id))
			mu.Lock()
			maxAll, seen = max(maxAll, n), max(seen, own)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	res := docker(t, "", "start", name)
	close(stop)
	<-watched
	if res.code == 0 || !strings.Contains(res.stderr, "--network container") {
		t.Errorf("docker start with --network container:%s: exit %d, stderr %q; want a refusal naming --network container", other, res.code, res.stderr)
	}
	t.Logf("refusal: %s", strings.TrimSpace(res.stderr))
	if seen > 0 || maxAll > before {
		t.Errorf("QEMU started for the refused container: %d of its own seen, %d QEMUs at most (%d before)", seen, maxAll, before)
	}
}

// shimPID finds the shim serving container id.
func shimPID(t *testing.T, id string) int {
	t.Helper()
	for _, pid := range pids() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmd), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-kata-v2" {
			continue
		}
		for i := range len(args) - 1 {
			if args[i] == "-id" && args[i+1] == id {
				return pid
			}
		}
	}
	t.Fatalf("no shim process serves container %s", id)
	return 0
}

// qemuPIDs lists the QEMU processes whose command line mentions s.
func qemuPIDs(s string) []int {
	var found []int
	for _, pid := range pids() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.HasPrefix(filepath.Base(string(bytes.SplitN(cmd, []byte{0}, 2)[0])), "qemu-system") && bytes.Contains(cmd, []byte(s)) {
			found = append(found, pid)
		}
	}
	return found
}

func pids() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// mountsAt counts the mounts /proc/self/mountinfo lists at p.
func mountsAt(p string) (int, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == p {
			n++
		}
	}
	return n, nil
}
