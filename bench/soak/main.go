// Command soak is the reliability evidence for the VM runtime: it starts and removes many kata
// containers (in a row, then several at once), each with an exec, networking and a volume, then
// checks that nothing is left behind (QEMU, shim or virtiofsd processes, network namespaces,
// mounts, state directories, open descriptors in dockerd and containerd) and that host memory is
// back within 5 % of where it started. With -faults it also kills QEMU, kills the shim, restarts
// dockerd (with and without live-restore) and restarts containerd while kata containers run, and
// checks that each ends in the clean state it explains.
//
//	. "$(KATA_TEST_ENGINE_INSTANCE=soak hack/engine.sh up)" && go run ./bench/soak -n 200 -parallel 10 -faults
//
// Needs root, QEMU and a test engine. The fault runs restart the engine's daemons, so they run only
// on a dedicated instance (KATA_TEST_ENGINE_INSTANCE set), never on the shared one. Exits non-zero
// on the first failed container cycle, a fault that does not end cleanly, or anything left behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

const runtimeName = "kata-soak"

type options struct {
	sequential int
	parallel   int
	faults     bool
	memSlack   float64
}

func main() {
	var o options
	flag.IntVar(&o.sequential, "n", 200, "kata containers started and removed in a row")
	flag.IntVar(&o.parallel, "parallel", 10, "kata containers started, used and removed at once (after the sequential run)")
	flag.BoolVar(&o.faults, "faults", false, "also inject faults: QEMU killed, shim killed, dockerd and containerd restarted (dedicated engine instance only)")
	flag.Float64Var(&o.memSlack, "mem-slack", 0.05, "how much host memory in use may grow over the run, as a fraction of what was in use at the start")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

func run(ctx context.Context, o options) error {
	if err := checkEnvironment(o); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kata-soak-")
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
	w, err := newWorld(ctx)
	if err != nil {
		return err
	}
	defer w.close()

	before, err := takeSnapshot(w.engine)
	if err != nil {
		return err
	}
	fmt.Printf("before: %s\n", before)
	if err := soak(ctx, w, o); err != nil {
		return err
	}
	// Descriptors and memory are compared before the faults: a restarted daemon starts afresh.
	if err := checkLeftovers(ctx, w, before, o.memSlack); err != nil {
		return err
	}
	if !o.faults {
		return nil
	}
	if err := injectFaults(ctx, w); err != nil {
		return err
	}
	return waitClean(ctx, w, before.processesOnly())
}

func checkEnvironment(o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it reads other processes' memory and descriptors)")
	}
	if !testenv.EngineUp() {
		return errors.New(`the test engine is not up: . "$(KATA_TEST_ENGINE_INSTANCE=soak hack/engine.sh up)"`)
	}
	if o.faults && os.Getenv("KATA_TEST_ENGINE_INSTANCE") == "" {
		return errors.New("-faults restarts the engine's daemons: run it on a dedicated instance, " +
			`. "$(KATA_TEST_ENGINE_INSTANCE=soak hack/engine.sh up)"`)
	}
	if o.sequential < 0 || o.parallel < 0 || o.memSlack < 0 {
		return errors.New("-n, -parallel and -mem-slack must not be negative")
	}
	return nil
}

// soak runs the sequential and the parallel phases and prints their pace.
func soak(ctx context.Context, w *world, o options) error {
	start := time.Now()
	for i := 0; i < o.sequential; i++ {
		if err := w.cycle(ctx, fmt.Sprintf("soak-seq-%d", i)); err != nil {
			return fmt.Errorf("sequential container %d of %d: %w", i+1, o.sequential, err)
		}
		if (i+1)%20 == 0 || i+1 == o.sequential {
			fmt.Printf("sequential: %d/%d containers, %.1f s each on average\n", i+1, o.sequential, time.Since(start).Seconds()/float64(i+1))
		}
	}
	if o.parallel == 0 {
		return nil
	}
	start = time.Now()
	if err := w.parallelCycles(ctx, o.parallel); err != nil {
		return fmt.Errorf("parallel run: %w", err)
	}
	fmt.Printf("parallel: %d containers at once in %.1f s\n", o.parallel, time.Since(start).Seconds())
	return nil
}

// checkLeftovers waits for teardown to settle (shims exit after the delete answers), then
// compares with the snapshot taken before the run.
func checkLeftovers(ctx context.Context, w *world, before snapshot, memSlack float64) error {
	var after snapshot
	var problems []string
	start := time.Now()
	for {
		var err error
		if after, err = takeSnapshot(w.engine); err != nil {
			return err
		}
		problems = after.leftoversSince(before, memSlack)
		if len(problems) == 0 || time.Since(start) > settleTime(problems) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	fmt.Printf("after:  %s\n", after)
	if len(problems) > 0 {
		return fmt.Errorf("left behind: %v", problems)
	}
	fmt.Println("nothing left behind")
	return nil
}

// settleTime is how long leftovers may take to go: 30 s for processes and mounts (teardown runs
// after the delete answers); 150 s when only daemon sockets remain: dockerd drops some finished
// client connections without closing them, and they are closed by its garbage collector, which
// an idle Go program runs at least every 2 minutes.
func settleTime(problems []string) time.Duration {
	for _, p := range problems {
		if !strings.HasPrefix(p, "daemon descriptor") || !strings.Contains(p, " socket\"") {
			return 30 * time.Second
		}
	}
	return 150 * time.Second
}
