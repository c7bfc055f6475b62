// Command startup measures how long a VM container takes to start and stop and what it costs the
// host in memory, side by side in one run:
//
//   - runc:  docker run --rm --runtime=runc busybox true
//   - kata:  the same under this tree's runtime
//   - floor: the same kernel booted by a plain qemu-system-x86_64 command line (floor.go: qboot,
//     9p, virtio-serial, no runtime code) to a minimal /init that mounts the share, runs busybox
//     true and powers off: what any VM container costs at least;
//   - kata+template (-template): kata with VM templating ([factory] template = true): the
//     warm-up round builds the template, the counted runs start clones of it;
//   - kata+pool (-pool): the same with a pool of one clone ([factory] pool = 1): a container takes
//     the clone waiting in the pool and a detached filler restores the next one in the background.
//     The warm-up round builds the template; after each run the benchmark waits, uncounted, for
//     the refill, so that no refill runs while another kind is measured.
//
// Kinds are interleaved round by round, so the ratios of one run compare like with like on a
// noisy machine. After each kata run the benchmark waits, uncounted, until the runtime's teardown
// has ended (Docker's removal does not wait for QEMU's exit), so that no kind is measured while
// another's teardown runs. -density 1,5,10,20 also starts that many idle kata containers and
// reads the host PSS of their QEMU, shim and virtiofsd (and so for each variant measured; for
// kata+pool the waiting clone's QEMU apart); -report writes docs/benchmarks.md with PNG plots.
//
//	. "$(hack/engine.sh up)" && flock /run/kata-e2e.lock go run ./bench/startup -n 10
//
// Exit status: 0 done, 1 a figure could not be read or a run failed, 3 a target was missed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Runtime names the benchmark registers with the test engine.
const (
	runtimeName         = "kata-bench"
	templateRuntimeName = "kata-bench-template"
	poolRuntimeName     = "kata-bench-pool"
	smallTBRuntimeName  = "kata-bench-template-tb"
)

// errTarget marks a run whose figures were read but miss a target given by flag.
var errTarget = errors.New("target missed")

type options struct {
	n            int
	maxKataFloor float64 // 0: no target
	maxKataRunc  float64
	template     bool // also measure kata+template
	maxTmplRunc  float64
	pool         bool // also measure kata+pool
	maxPoolRunc  float64
	smallTB      int     // also measure kata+template with tcg_translation_buffer = smallTB (0: not)
	maxTmplPSS   float64 // MiB per templated container (each templated kind) at N = 10
	density      []int
	report       string // docs/benchmarks.md to write, "" for none
	trace        bool
}

func main() {
	var o options
	var density string
	flag.IntVar(&o.n, "n", 10, "runs of each kind")
	flag.Float64Var(&o.maxKataFloor, "max-kata-floor-ratio", 0, "fail (exit 3) when the kata/floor ratio of medians is above this (0: no target)")
	flag.Float64Var(&o.maxKataRunc, "max-kata-runc-ratio", 0, "fail (exit 3) when the kata/runc ratio of medians is above this (0: no target)")
	flag.BoolVar(&o.template, "template", false, "also measure kata with VM templating ([factory] template = true), in start-up and density")
	flag.Float64Var(&o.maxTmplRunc, "max-template-runc-ratio", 0, "fail (exit 3) when the kata+template/runc ratio of medians is above this (0: no target; needs -template)")
	flag.BoolVar(&o.pool, "pool", false, "also measure kata with a pool of one waiting clone of the VM template ([factory] template = true, pool = 1), in start-up and density")
	flag.Float64Var(&o.maxPoolRunc, "max-pool-runc-ratio", 0, "fail (exit 3) when the kata+pool/runc ratio of medians is above this (0: no target; needs -pool)")
	flag.IntVar(&o.smallTB, "template-tb", 0, "also measure kata with VM templating and [hypervisor] tcg_translation_buffer = this many MiB (kata+template+tb; 0: not), in start-up and density")
	flag.Float64Var(&o.maxTmplPSS, "max-template-pss-mib", 0, "fail (exit 3) when the host PSS per idle container of any templated kind measured (kata+template, kata+pool, kata+template+tb) at 10 containers, or at the most measured, is above this many MiB (0: no target; needs -density and a templated kind)")
	flag.StringVar(&density, "density", "", "idle kata container counts to measure host memory at, e.g. 1,5,10,20")
	flag.StringVar(&o.report, "report", "", "write the figures to this Markdown file, with PNG plots in bench/ beside it")
	flag.BoolVar(&o.trace, "trace", false, "also break one kata container's start and stop down into steps, from process start times and the guest's console")
	flag.Parse()
	smallTBMiB = o.smallTB
	var err error
	if o.density, err = parseCounts(density); err == nil {
		err = o.check()
	}
	if err != nil || o.n < 1 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "startup: usage: -n N (>= 1) [-density 1,5,10] [-report FILE] [-max-kata-floor-ratio R] [-max-kata-runc-ratio R] [-template [-max-template-runc-ratio R]] [-pool [-max-pool-runc-ratio R]] [-max-template-pss-mib M] [-trace]", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	switch {
	case errors.Is(err, errTarget):
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

// check refuses a target that nothing measured would be checked against.
func (o options) check() error {
	switch {
	case o.maxTmplRunc > 0 && !o.template:
		return errors.New("-max-template-runc-ratio needs -template")
	case o.maxPoolRunc > 0 && !o.pool:
		return errors.New("-max-pool-runc-ratio needs -pool")
	case o.maxTmplPSS > 0 && (len(o.density) == 0 || !o.template && !o.pool && o.smallTB == 0):
		return errors.New("-max-template-pss-mib needs -density and -template, -pool or -template-tb")
	}
	return nil
}
