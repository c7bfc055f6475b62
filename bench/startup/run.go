package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// The kinds of start-up measured, in the order printed.
const (
	kindRunc     = "runc"
	kindKata     = "kata"
	kindTemplate = "kata+template"
	kindFloor    = "floor"
)

// results is everything one run measured, for the terminal and the report.
type results struct {
	Machine machine
	Runs    int
	Times   map[string][]time.Duration // per kind; a kind not built has none
	Density []densityPoint
	// TemplateDensity is Density for kata+template (-template).
	TemplateDensity []densityPoint
	Trace           []traceStep
}

func run(ctx context.Context, o options) error {
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
	kinds := []kind{
		{kindRunc, func() error { return dockerRun(ctx, "runc") }},
		{kindKata, func() error { return dockerRun(ctx, runtimeName) }},
		{kindFloor, func() error { return fl.run(ctx) }},
	}
	if o.template {
		unregister, err := setUpTemplate(k)
		if err != nil {
			return err
		}
		defer unregister()
		kinds = append(kinds, kind{kindTemplate, func() error { return dockerRun(ctx, templateRuntimeName) }})
	}
	res := &results{Runs: o.n, Machine: describeMachine(ctx, h.Path, k.GuestKernel, acc, why, h.VCPUs, h.MemoryMiB)}
	if res.Times, err = startup(ctx, o.n, kinds); err != nil {
		return err
	}
	printStartup(res)
	if o.trace {
		if res.Trace, err = traceOne(ctx, k); err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		printTrace(res.Trace)
	}
	if len(o.density) > 0 {
		if res.Density, err = density(ctx, o.density, runtimeName); err != nil {
			return err
		}
		printDensity(kindKata, res.Density)
		if o.template {
			if res.TemplateDensity, err = density(ctx, o.density, templateRuntimeName); err != nil {
				return err
			}
			printDensity(kindTemplate, res.TemplateDensity)
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

// checkTargets fails the run when a ratio given by flag is missed.
func checkTargets(res *results, o options) error {
	var missed []string
	check := func(name string, got, max float64) {
		if max > 0 && got > max {
			missed = append(missed, fmt.Sprintf("%s = %.2fx, target <= %.2fx", name, got, max))
		}
	}
	check("kata/floor", res.ratio(kindKata, kindFloor), o.maxKataFloor)
	check("kata/runc", res.ratio(kindKata, kindRunc), o.maxKataRunc)
	if len(res.Times[kindTemplate]) > 0 {
		check("kata+template/runc", res.ratio(kindTemplate, kindRunc), o.maxTmplRunc)
	}
	if len(missed) > 0 {
		return fmt.Errorf("%w: %s", errTarget, strings.Join(missed, "; "))
	}
	return nil
}

// ratio of the medians of two kinds.
func (r *results) ratio(a, b string) float64 {
	return ratio(median(r.Times[a]), median(r.Times[b]))
}

// setUpTemplate registers the runtime with VM templating on, without a template yet: the
// warm-up round builds it. The returned function unregisters it and removes the template.
func setUpTemplate(k *testenv.Kata) (func(), error) {
	templates := filepath.Join(testenv.StateDir+".cache", "template")
	if err := os.RemoveAll(templates); err != nil {
		return nil, err
	}
	unregister, err := k.RegisterVariant(templateRuntimeName, func(c *config.Config) { c.Factory.Template = true })
	if err != nil {
		return nil, fmt.Errorf("registering %s: %w", templateRuntimeName, err)
	}
	return func() {
		unregister()
		os.RemoveAll(templates)
	}, nil
}
