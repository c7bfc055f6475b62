// Command startup measures how long a VM container takes to start and stop, side by side in one
// run: `docker run --rm --runtime=kata busybox true`, the same under runc, and the floor (the same
// kernel and initrd booted by QEMU directly to a ready agent, then powered off, without Docker).
// It also prints the host memory (PSS) of QEMU plus the shim for an idle running container.
//
//	hack/engine.sh up && . "$(hack/engine.sh env)" && go run ./bench/startup -n 10
//
// Needs root, QEMU and the test engine. Machines here are noisy: compare the ratios of one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

const runtimeName = "kata-bench"

func main() {
	n := flag.Int("n", 10, "runs of each kind")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	if !testenv.EngineUp() {
		return fmt.Errorf("the test engine is not up: hack/engine.sh up && . \"$(hack/engine.sh env)\"")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kata-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the shim, the agent and the guest image ...")
	k, err := testenv.SetUpKata(ctx, dir, runtimeName)
	if err != nil {
		return err
	}
	defer k.Unregister()

	kinds := []struct {
		name string
		fn   func() error
	}{
		{"runc", func() error { return dockerRun("runc") }},
		{"kata", func() error { return dockerRun(runtimeName) }},
		{"floor", func() error { return floor(ctx, k) }},
	}
	times := map[string][]time.Duration{}
	for i := -1; i < n; i++ { // i == -1 is a warm-up round, not counted
		for _, kind := range kinds {
			start := time.Now()
			if err := kind.fn(); err != nil {
				return fmt.Errorf("%s: %w", kind.name, err)
			}
			if i >= 0 {
				times[kind.name] = append(times[kind.name], time.Since(start))
			}
		}
	}
	fmt.Printf("\nstart+stop, %d runs each, interleaved (guest kernel %s, accelerator per `kata-deploy check`)\n", n, k.GuestKernel)
	fmt.Printf("  %-6s %10s %10s %10s\n", "", "median", "min", "max")
	for _, kind := range kinds {
		d := times[kind.name]
		fmt.Printf("  %-6s %10s %10s %10s\n", kind.name, ms(median(d)), ms(minimum(d)), ms(maximum(d)))
	}
	kata, fl, rc := median(times["kata"]), median(times["floor"]), median(times["runc"])
	fmt.Printf("  kata/floor = %.2fx (target <= 1.30x)   kata/runc = %.2fx\n", ratio(kata, fl), ratio(kata, rc))
	return printMemory()
}

func dockerRun(rt string) error {
	out, err := exec.Command("docker", "run", "--rm", "--runtime="+rt, "busybox", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// floor boots the runtime's kernel and initrd with QEMU to a ready agent and powers it off.
func floor(ctx context.Context, k *testenv.Kata) error {
	h := k.Config.Hypervisor
	share, err := os.MkdirTemp("", "floor-share-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(share)
	vm, err := hypervisor.Start(ctx, hypervisor.Config{
		ID: "floor", QEMUPath: h.Path, Kernel: h.Kernel, Initrd: h.Initrd, Firmware: h.Firmware,
		MachineType: h.MachineType, Accelerator: accelerator(), KernelParams: h.KernelParamList(),
		VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, StateDir: filepath.Join(testenv.StateDir, "floor"),
		Shares: []hypervisor.Share{{Tag: agentproto.SharedTag, HostPath: share, Type: hypervisor.Share9P}},
	})
	if err != nil {
		return err
	}
	defer vm.Stop(ctx)
	conn, err := net.Dial("unix", vm.AgentSocket)
	if err != nil {
		return err
	}
	client, err := agentproto.NewClient(conn)
	if err != nil {
		return err
	}
	defer client.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = client.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent did not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = client.Shutdown(ctx)
	select {
	case <-vm.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the VM did not power off")
	}
	return nil
}

// accelerator is what the runtime picks here: kvm only where it really works.
func accelerator() string {
	name, _ := accel.HostAccelerator()
	return name
}

// printMemory starts an idle container and prints the PSS of its QEMU and shim.
func printMemory() error {
	out, err := exec.Command("docker", "run", "-d", "--runtime="+runtimeName, "busybox", "sleep", "600").Output()
	if err != nil {
		return fmt.Errorf("starting an idle container: %w", err)
	}
	id := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", id).Run()
	time.Sleep(3 * time.Second) // let the guest settle
	pidOut, _ := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
	qemuPid := strings.TrimSpace(string(pidOut))
	shimOut, _ := exec.Command("pgrep", "-f", "containerd-shim-kata-v2 .*-id "+id).Output()
	qemu := pss(qemuPid)
	var shim int
	for _, p := range strings.Fields(string(shimOut)) {
		shim += pss(p)
	}
	fmt.Printf("\nhost memory of an idle container (PSS): QEMU %d MiB + shim %d MiB = %d MiB\n", qemu/1024, shim/1024, (qemu+shim)/1024)
	return nil
}

// pss returns a process's proportional set size in KiB.
func pss(pid string) int {
	data, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	s := sorted(d)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minimum(d []time.Duration) time.Duration { return sorted(d)[0] }
func maximum(d []time.Duration) time.Duration { s := sorted(d); return s[len(s)-1] }

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
