package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/plugin"
)

// The kata-block volume driver against the test engine: the plugin binary is started by the test,
// under a name of its own, and serves the engine through /run/docker/plugins.

const testVolumeDriver = "kata-block-e2e"

var buildPluginOnce sync.Once

var pluginBuildErr error

// pluginBinary builds kata-plugins once for the test binary.
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "kata-plugins")
	buildPluginOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", bin, "github.com/kata-deploy/kata-deploy/cmd/kata-plugins").CombinedOutput()
		if err != nil {
			pluginBuildErr = fmt.Errorf("%w: %s", err, out)
		}
	})
	if pluginBuildErr != nil {
		t.Fatalf("building kata-plugins: %v", pluginBuildErr)
	}
	return bin
}

// blockPlugin is a running kata-plugins process.
type blockPlugin struct {
	stateDir string
	cmd      *exec.Cmd
	log      *os.File
}

// startBlockPlugin builds kata-plugins once and starts it with stateDir (kept across restarts).
func startBlockPlugin(t *testing.T, stateDir string) *blockPlugin {
	t.Helper()
	testreq.Commands(t, "mkfs.ext4", "e2fsck", "mount")
	bin := pluginBinary(t)
	logFile, err := os.OpenFile(filepath.Join(stateDir, "..", "plugin.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p := &blockPlugin{stateDir: stateDir, log: logFile}
	p.cmd = exec.Command(bin, "--volume-name", testVolumeDriver, "--state-dir", stateDir, "--network-name", "")
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sock := plugin.SocketPath(plugin.DefaultSocketDir, testVolumeDriver)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			p.stop(t)
			t.Fatalf("kata-plugins did not create %s", sock)
		}
	}
}

func (p *blockPlugin) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
	p.log.Close()
}

// setUpBlockVolumes starts the plugin for a test and removes what the test left at its end.
func setUpBlockVolumes(t *testing.T) *blockPlugin {
	t.Helper()
	requireKata(t)
	dir, err := os.MkdirTemp("", "kata-block-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	p := startBlockPlugin(t, state)
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "plugin.log")); err == nil {
				t.Logf("plugin log:\n%s", b)
			}
		}
		p.stop(t)
		matches, _ := filepath.Glob(filepath.Join(state, "*", "mnt"))
		for _, m := range matches {
			_ = exec.Command("umount", m).Run()
		}
		os.RemoveAll(dir)
	})
	return p
}

// newBlockVolume creates a volume of the test driver and removes it when the test ends.
func newBlockVolume(t *testing.T, opts ...string) string {
	t.Helper()
	name := fmt.Sprintf("blk-%d", time.Now().UnixNano()%1e9)
	args := []string{"volume", "create", "-d", testVolumeDriver}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	if res := docker(t, "", append(args, name)...); res.code != 0 {
		t.Fatalf("docker volume create: %s", res.stderr)
	}
	t.Cleanup(func() { docker(t, "", "volume", "rm", "-f", name) })
	return name
}

func mustRun(t *testing.T, rt string, args ...string) string {
	t.Helper()
	res := docker(t, "", append([]string{"run", "--rm", "--runtime=" + rt}, args...)...)
	if res.code != 0 {
		t.Fatalf("docker run --runtime=%s %v: exit %d: %s", rt, args, res.code, res.stderr)
	}
	return res.stdout
}

// TestBlockVolumeKataAndRunc: written by a VM (as a virtio-blk disk, not a share), read by runc
// (loop-mounted), written again by runc and read back by a VM; ext4 and xfs.
func TestBlockVolumeKataAndRunc(t *testing.T) {
	setUpBlockVolumes(t)
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			if fs == "xfs" {
				testreq.Commands(t, "mkfs.xfs", "xfs_repair")
			}
			vol := newBlockVolume(t, "size=320M", "fs="+fs)
			out := mustRun(t, "kata", "-v", vol+":/data", "busybox", "sh", "-c",
				"echo from-kata > /data/f && sync && grep ' /data ' /proc/mounts")
			if !strings.HasPrefix(out, "/dev/vd") || !strings.Contains(out, " "+fs+" ") {
				t.Fatalf("in the VM /data is not the %s disk: %q", fs, out)
			}
			if got := mustRun(t, "runc", "-v", vol+":/data", "busybox", "sh", "-c", "cat /data/f && echo from-runc > /data/g"); got != "from-kata\n" {
				t.Fatalf("runc read %q", got)
			}
			if got := mustRun(t, "kata", "-v", vol+":/data", "busybox", "cat", "/data/g"); got != "from-runc\n" {
				t.Fatalf("kata read %q", got)
			}
			res := docker(t, "", "volume", "inspect", vol)
			var info []struct{ Status map[string]any }
			if err := json.Unmarshal([]byte(res.stdout), &info); err != nil || len(info) != 1 {
				t.Fatalf("volume inspect: %v: %s", err, res.stdout)
			}
			if st := info[0].Status; st["fs"] != fs || st["size"] != float64(320<<20) || st["attachment"] != "none" {
				t.Fatalf("volume status = %v", st)
			}
		})
	}
}

// TestBlockVolumeExclusive: while a VM has the volume, a second VM, a runc container and
// `docker volume rm` are refused; a plugin restart and a `docker restart` lose nothing.
func TestBlockVolumeExclusive(t *testing.T) {
	p := setUpBlockVolumes(t)
	vol := newBlockVolume(t, "size=64M")
	name := startDetached(t, "-v", vol+":/data", "busybox", "sh", "-c", "echo one >> /data/log; sync; sleep 3600")
	waitForAttachment(t, vol, "vm ")
	for _, rt := range []string{"kata", "runc"} {
		res := docker(t, "", "run", "--rm", "--runtime="+rt, "-v", vol+":/data", "busybox", "true")
		if res.code == 0 || !strings.Contains(res.stderr, "one container at a time") {
			t.Errorf("a %s container attached a volume in use: exit %d: %s", rt, res.code, res.stderr)
		}
	}
	if res := docker(t, "", "volume", "rm", vol); res.code == 0 || !strings.Contains(res.stderr, "in use") {
		t.Errorf("docker volume rm of a volume in use: exit %d: %s", res.code, res.stderr)
	}
	p.stop(t)
	setUpRestarted := startBlockPlugin(t, p.stateDir)
	*p = *setUpRestarted
	waitForAttachment(t, vol, "vm ")
	if res := docker(t, "", "restart", "-t", "1", name); res.code != 0 {
		t.Fatalf("docker restart: %s", res.stderr)
	}
	waitForAttachment(t, vol, "vm ")
	res := docker(t, "", "exec", name, "cat", "/data/log")
	if res.stdout != "one\none\n" {
		t.Fatalf("after a plugin restart and docker restart /data/log = %q (%s)", res.stdout, res.stderr)
	}
	docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "volume", "rm", vol); res.code != 0 {
		t.Fatalf("docker volume rm once unused: %s", res.stderr)
	}
}

// waitForAttachment waits until the volume's Status.attachment starts with prefix.
func waitForAttachment(t *testing.T, vol, prefix string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got = strings.TrimSpace(docker(t, "", "volume", "inspect", "-f", "{{.Status.attachment}}", vol).stdout)
		if strings.HasPrefix(got, prefix) {
			return
		}
	}
	t.Fatalf("volume %s: attachment %q, want %q...", vol, got, prefix)
}

// TestBlockVolumeReadOnly: a :ro volume is a read-only disk in the guest; even a privileged
// container that remounts it read-write cannot change the image.
func TestBlockVolumeReadOnly(t *testing.T) {
	setUpBlockVolumes(t)
	vol := newBlockVolume(t, "size=64M")
	mustRun(t, "runc", "-v", vol+":/data", "busybox", "sh", "-c", "echo original > /data/f")
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--privileged", "-v", vol+":/data:ro", "busybox", "sh", "-c",
		"grep ' /data ' /proc/mounts; echo x > /data/f && echo wrote; mount -o remount,rw /data && echo remounted; echo pwned > /data/f; cat /data/f")
	t.Logf("guest: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	if !strings.Contains(res.stdout, "/dev/vd") || !strings.Contains(res.stdout, " ro,") {
		t.Errorf("/data is not a read-only disk in the guest: %q", res.stdout)
	}
	if strings.Contains(res.stdout, "wrote") {
		t.Error("the guest wrote to a :ro volume")
	}
	if got := mustRun(t, "runc", "-v", vol+":/data", "busybox", "cat", "/data/f"); got != "original\n" {
		t.Fatalf("the :ro volume now holds %q", got)
	}
}

// TestBlockVolumeCorruptRefusedOnHost: a damaged file system is never mounted by the host kernel.
func TestBlockVolumeCorruptRefusedOnHost(t *testing.T) {
	p := setUpBlockVolumes(t)
	vol := newBlockVolume(t, "size=64M")
	mustRun(t, "runc", "-v", vol+":/data", "busybox", "sh", "-c", "mkdir -p /data/d && echo x > /data/d/f")
	// Overwrite the first block group's inode table area and the root directory's blocks: the
	// superblock stays readable, so only a full check finds the damage.
	img := filepath.Join(p.stateDir, vol, "disk.img")
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 1<<18))
	if _, err := f.WriteAt(junk, 4<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(junk[:3072], 1024+1024); err != nil { // group descriptors
		t.Fatal(err)
	}
	f.Close()
	res := docker(t, "", "run", "--rm", "--runtime=runc", "-v", vol+":/data", "busybox", "ls", "/data")
	if res.code == 0 || !strings.Contains(res.stderr, "failed a read-only check") {
		t.Fatalf("a corrupted image was mounted on the host: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
