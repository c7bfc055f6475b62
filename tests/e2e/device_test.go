package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// loopDevice attaches a 4 MiB image starting with marker to a loop device, detached at cleanup.
func loopDevice(t *testing.T, marker string) string {
	t.Helper()
	img := t.TempDir() + "/disk.img"
	data := make([]byte, 4<<20)
	copy(data, marker)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		missing(t, "losetup could not attach a loop device: "+err.Error())
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// readDevice reads n bytes of dev at offset, through the host's block device.
func readDevice(t *testing.T, dev string, offset int64, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKataDeviceBlock: docker run --device gives a host block device to the VM as a disk at the
// container path the user chose, read-write, or read-only with :r; writes reach the host device.
func TestKataDeviceBlock(t *testing.T) {
	requireKata(t)
	const marker = "kata-device-marker"
	dev := loopDevice(t, marker)

	out := mustRun(t, "kata", "--device", dev+":/dev/xvdk", "busybox", "sh", "-c",
		"ls -l /dev/xvdk; head -c 18 /dev/xvdk; echo; printf written-in-vm | dd of=/dev/xvdk bs=512 seek=1 conv=notrunc,fsync 2>/dev/null; echo rc=$?")
	if !strings.HasPrefix(out, "b") || !strings.Contains(out, marker+"\n") || !strings.Contains(out, "rc=0") {
		t.Fatalf("the device in the container: %q", out)
	}
	if got := readDevice(t, dev, 512, 13); !bytes.Equal(got, []byte("written-in-vm")) {
		t.Errorf("the host device holds %q at 512, want what the VM wrote", got)
	}

	out = mustRun(t, "kata", "--device", dev+":/dev/xvdk:r", "busybox", "sh", "-c",
		"head -c 18 /dev/xvdk; echo; printf again | dd of=/dev/xvdk bs=512 seek=2 conv=notrunc,fsync 2>/dev/null; echo rc=$?")
	if !strings.Contains(out, marker+"\n") || strings.Contains(out, "rc=0") {
		t.Errorf("a :r device in the container: %q (want readable, not writable)", out)
	}
	if got := readDevice(t, dev, 1024, 5); bytes.Equal(got, []byte("again")) {
		t.Error("a write to a :r device reached the host")
	}
}

// TestKataDeviceRefused: a host character device a VM cannot have is refused at create with the
// reason; the kernel's virtual ones are the guest's own.
func TestKataDeviceRefused(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--device", "/dev/loop-control", "busybox", "true")
	if res.code == 0 || !strings.Contains(res.stderr, "cannot be given to a VM") {
		t.Fatalf("--device /dev/loop-control: exit %d, stderr %q; want a refusal naming the reason", res.code, res.stderr)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing(t, "the host has no /dev/fuse to pass: "+err.Error())
	}
	out := mustRun(t, "kata", "--device", "/dev/fuse:/dev/myfuse", "busybox", "ls", "-l", "/dev/myfuse")
	if !strings.HasPrefix(out, "c") || !strings.Contains(out, "10,") || !strings.Contains(out, "229") {
		t.Errorf("/dev/myfuse in the VM: %q, want char device 10, 229", out)
	}
}
