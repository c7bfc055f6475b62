// Command volume measures sequential I/O on a volume from inside a container, side by side in one
// run: a kata container on a kata-block volume (a virtio-blk disk), a kata container on a bind
// mount (shared through 9p or virtio-fs), and a runc container on a local volume. Each run writes
// 256 MiB with dd (direct I/O, then fsync) and reads it back (direct I/O).
//
//	. "$(hack/engine.sh up)" && go run ./bench/volume -n 3
//
// Needs root, QEMU, mkfs.ext4 and the test engine. Machines here are noisy: compare the ratios of
// one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/plugin"
)

const (
	runtimeName = "kata-bench-vol"
	driverName  = "kata-block-bench"
	sizeMiB     = 256
)

// script writes then reads sizeMiB in the container and prints the two durations in seconds,
// timed with /proc/uptime (the guest's clock in a VM). Direct I/O where the file system allows it.
const script = `t() { cut -d' ' -f1 /proc/uptime; }
a=$(t); dd if=/dev/zero of=/data/f bs=1M count=%[1]d oflag=direct conv=fsync 2>/dev/null || { m=buffered; a=$(t); dd if=/dev/zero of=/data/f bs=1M count=%[1]d conv=fsync 2>/dev/null; }
b=$(t); dd if=/data/f of=/dev/null bs=1M iflag=direct 2>/dev/null || dd if=/data/f of=/dev/null bs=1M 2>/dev/null
c=$(t); rm -f /data/f; echo "$a $b $c ${m:-direct}"`

func main() {
	n := flag.Int("n", 3, "runs of each kind")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "volume:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	if !testenv.EngineUp() {
		return errors.New(`the test engine is not up: . "$(hack/engine.sh up)"`)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kata-bench-vol-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the shim, the agent, the guest image and kata-plugins ...")
	k, err := testenv.SetUpKata(ctx, dir, runtimeName)
	if err != nil {
		return err
	}
	defer k.Unregister()
	stop, err := startPlugin(ctx, dir)
	if err != nil {
		return err
	}
	defer stop()
	block, err := volume("-d", driverName, "-o", "size=1G")
	if err != nil {
		return err
	}
	defer docker("volume", "rm", "-f", block)
	local, err := volume()
	if err != nil {
		return err
	}
	defer docker("volume", "rm", "-f", local)
	bind := filepath.Join(dir, "bind")
	if err := os.Mkdir(bind, 0o755); err != nil {
		return err
	}
	kinds := []struct{ name, runtime, mount string }{
		{"kata, kata-block volume (virtio-blk)", runtimeName, block + ":/data"},
		{"kata, bind mount (" + k.Config.Hypervisor.SharedFS + ")", runtimeName, bind + ":/data"},
		{"runc, local volume", "runc", local + ":/data"},
	}
	fmt.Printf("%d MiB, dd bs=1M, %d runs each, median\n", sizeMiB, n)
	fmt.Printf("%-40s %12s %12s  %s\n", "", "write MiB/s", "read MiB/s", "mode")
	for _, kd := range kinds {
		var w, r []float64
		mode := ""
		for range n {
			ws, rs, m, err := once(kd.runtime, kd.mount)
			if err != nil {
				return fmt.Errorf("%s: %w", kd.name, err)
			}
			w, r, mode = append(w, sizeMiB/ws), append(r, sizeMiB/rs), m
		}
		fmt.Printf("%-40s %12.1f %12.1f  %s\n", kd.name, median(w), median(r), mode)
	}
	return nil
}

// once runs the script in a new container and returns the write and read times in seconds.
func once(rt, mount string) (write, read float64, mode string, err error) {
	out, err := docker("run", "--rm", "--runtime="+rt, "-v", mount, "busybox", "sh", "-c", fmt.Sprintf(script, sizeMiB))
	if err != nil {
		return 0, 0, "", err
	}
	f := strings.Fields(out)
	if len(f) != 4 {
		return 0, 0, "", fmt.Errorf("unexpected output %q", out)
	}
	var t [3]float64
	for i := range t {
		if t[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return 0, 0, "", err
		}
	}
	// /proc/uptime has a resolution of 10 ms.
	return max(t[1]-t[0], 0.01), max(t[2]-t[1], 0.01), f[3], nil
}

// startPlugin builds kata-plugins and serves the driver from dir until stop is called.
func startPlugin(ctx context.Context, dir string) (stop func(), err error) {
	bin := filepath.Join(dir, "kata-plugins")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/kata-deploy/kata-deploy/cmd/kata-plugins").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building kata-plugins: %w: %s", err, out)
	}
	state := filepath.Join(dir, "plugin")
	cmd := exec.Command(bin, "--volume-name", driverName, "--state-dir", state, "--network-name", "")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if mnts, _ := filepath.Glob(filepath.Join(state, "*", "mnt")); len(mnts) > 0 {
			for _, m := range mnts {
				_ = exec.Command("umount", m).Run()
			}
		}
	}
	sock := plugin.SocketPath(plugin.DefaultSocketDir, driverName)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return stop, nil
		}
	}
	stop()
	return nil, fmt.Errorf("kata-plugins did not create %s", sock)
}

func volume(args ...string) (string, error) {
	name := fmt.Sprintf("bench-vol-%d", time.Now().UnixNano()%1e9)
	_, err := docker(append(append([]string{"volume", "create"}, args...), name)...)
	return name, err
}

func docker(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}
