package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// The kinds of start-up measured.
const (
	kindRunc     = "runc"
	kindKata     = "kata"
	kindTemplate = "kata+template"
	kindPool     = "kata+pool"
	kindSmallTB  = "kata+template+tb"
	kindFloor    = "floor"
)

// results is everything one run measured, for the terminal and the report.
type results struct {
	Machine machine
	Runs    int
	Times   map[string][]time.Duration // per kind; a kind not built has none
	Density map[string][]densityPoint  // per kind measured: kata and the variants
	Trace   []traceStep
}

func run(ctx context.Context, o options) (err error) {
	if !testenv.EngineUp() {
		return fmt.Errorf("the test engine is not up: . \"$(hack/engine.sh up)\"")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: QEMU, the shim and /proc/<pid>/smaps_rollup of other users' processes need it")
	}
	dir, err := os.MkdirTemp("", "kata-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the shim, the agent, the guest image and the floor's /init ...")
	k, err := testenv.SetUpKata(ctx, dir, runtimeName)
	if err != nil {
		return err
	}
	defer k.Unregister()
	h := k.Config.Hypervisor
	acc, why := accel.HostAccelerator()
	fl, err := newFloorVM(ctx, dir,
		imageFiles{Vmlinux: filepath.Join(k.ImageDir, guestimage.VmlinuxName), Initrd: filepath.Join(k.ImageDir, guestimage.InitrdName)},
		hostVM{QEMU: h.Path, Firmware: h.Firmware, Machine: h.MachineType, Accel: acc, VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB})
	if err != nil {
		return err
	}
	// After a kata run (uncounted) the runtime's teardown ends: Docker's removal does not wait
	// for QEMU's exit, and no kind is measured while one is still under way.
	settled := func() error { return teardownsDone(ctx, k.Config.Runtime.StateDir) }
	kinds := []kind{
		{name: kindRunc, fn: func() error { return dockerRun(ctx, "runc") }},
		{name: kindKata, fn: func() error { return dockerRun(ctx, runtimeName) }, settle: settled},
		{name: kindFloor, fn: func() error { return fl.run(ctx) }},
	}
	on, cleanup, err := setUpVariants(ctx, k, o)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	pool := false
	for _, v := range on {
		kd := kind{name: v.kind, fn: func() error { return dockerRun(ctx, v.runtime) }, settle: settled}
		if v.pool {
			// After each run (uncounted) the pool is refilled too: the warm-up round's run built
			// the template, and no refill may run while another kind is measured (it would slow
			// the baseline down).
			kd.settle = func() error {
				if _, err := waitingClone(ctx); err != nil {
					return fmt.Errorf("waiting for the refill: %w", err)
				}
				return settled()
			}
			pool = true
		}
		kinds = append(kinds, kd)
	}
	res := &results{Runs: o.n, Machine: describeMachine(ctx, h.Path, k.GuestKernel, acc, why, h.VCPUs, h.MemoryMiB)}
	if res.Times, err = startup(ctx, o.n, kinds); err != nil {
		return err
	}
	printStartup(res)
	if pool {
		// No waiting clone (nor a filler at work) while the trace and the density of the other
		// kinds are measured: it would share their pages and their CPU.
		if err := removePool(ctx); err != nil {
			return err
		}
	}
	if o.trace {
		if res.Trace, err = traceOne(ctx, k); err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		printTrace(res.Trace)
	}
	if len(o.density) > 0 {
		res.Density = map[string][]densityPoint{}
		for _, v := range append([]variant{{kind: kindKata, runtime: runtimeName}}, on...) {
			var waiting func(context.Context) (int, error)
			if v.pool {
				// Started with a waiting clone, as a pool is once filled; each figure is read
				// with one waiting (its QEMU's PSS apart), the starts in between do not wait.
				if err := dockerRun(ctx, v.runtime); err != nil {
					return err
				}
				if _, err := waitingClone(ctx); err != nil {
					return fmt.Errorf("before the density of %s: %w", v.kind, err)
				}
				waiting = waitingClone
			}
			points, err := density(ctx, o.density, v.runtime, waiting)
			if err != nil {
				return fmt.Errorf("density of %s: %w", v.kind, err)
			}
			res.Density[v.kind] = points
			printDensity(v.kind, points, v.pool)
			if v.pool {
				if err := removePool(ctx); err != nil {
					return err
				}
			}
		}
	}
	if o.report != "" {
		if err := writeReport(o.report, res); err != nil {
			return err
		}
		fmt.Println("\nwrote", o.report)
	}
	return checkTargets(res, o)
}

type kind struct {
	name string
	fn   func() error
	// settle, if set, runs after each run of the kind, uncounted: the machine is back at rest.
	settle func() error
}

// teardownTimeout bounds the wait for the runtime's teardowns. A variable for tests.
var teardownTimeout = 10 * time.Second

// teardownsDone waits until the runtime's state directory holds no sandbox: every container's
// teardown has ended (QEMU exited, its state and cgroup removed).
func teardownsDone(ctx context.Context, stateDir string) error {
	deadline := time.Now().Add(teardownTimeout)
	for {
		entries, err := os.ReadDir(stateDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a container's teardown has not ended after %s: %s holds %d entries", teardownTimeout, stateDir, len(entries))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// startup runs every kind once per round, n rounds after one warm-up round that is not counted.
func startup(ctx context.Context, n int, kinds []kind) (map[string][]time.Duration, error) {
	times := map[string][]time.Duration{}
	for i := -1; i < n; i++ {
		for _, k := range kinds {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			start := time.Now()
			if err := k.fn(); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", k.name, i+1, err)
			}
			if i >= 0 {
				times[k.name] = append(times[k.name], time.Since(start))
			}
			if k.settle != nil {
				if err := k.settle(); err != nil {
					return nil, fmt.Errorf("%s, round %d: %w", k.name, i+1, err)
				}
			}
		}
		fmt.Printf("\rround %d/%d", i+1, n)
	}
	fmt.Println()
	return times, nil
}

func dockerRun(ctx context.Context, rt string) error {
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--runtime="+rt, "busybox", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker run --runtime=%s: %w: %s", rt, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkTargets fails the run when a target given by flag is missed, naming every miss.
func checkTargets(res *results, o options) error {
	var missed []string
	check := func(name string, got, max float64) {
		if max > 0 && got > max {
			missed = append(missed, fmt.Sprintf("%s = %.2fx, target <= %.2fx", name, got, max))
		}
	}
	check("kata/floor", res.ratio(kindKata, kindFloor), o.maxKataFloor)
	check("kata/runc", res.ratio(kindKata, kindRunc), o.maxKataRunc)
	for _, v := range variants {
		if len(res.Times[v.kind]) > 0 {
			check(v.kind+"/runc", res.ratio(v.kind, kindRunc), v.maxRunc(o))
		}
		if p, ok := pssTargetPoint(res.Density[v.kind]); ok && v.templated && o.maxTmplPSS > 0 {
			if got := float64(p.Total()) / float64(p.N) / 1024; got > o.maxTmplPSS {
				missed = append(missed, fmt.Sprintf("%s PSS per container at N=%d = %.1f MiB, target <= %.1f MiB", v.kind, p.N, got, o.maxTmplPSS))
			}
		}
	}
	if len(missed) > 0 {
		return fmt.Errorf("%w: %s", errTarget, strings.Join(missed, "; "))
	}
	return nil
}

// pssTargetN is the number of idle containers -max-template-pss-mib is checked at.
const pssTargetN = 10

// pssTargetPoint is the density figure -max-template-pss-mib is checked against: at pssTargetN
// containers, or else at the most measured.
func pssTargetPoint(points []densityPoint) (densityPoint, bool) {
	if len(points) == 0 {
		return densityPoint{}, false
	}
	for _, p := range points {
		if p.N == pssTargetN {
			return p, true
		}
	}
	return points[len(points)-1], true
}

// ratio of the medians of two kinds.
func (r *results) ratio(a, b string) float64 {
	return ratio(median(r.Times[a]), median(r.Times[b]))
}
