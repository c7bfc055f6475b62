package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// densityLabel marks the benchmark's idle containers, so that a run removes what an interrupted
// one left.
const densityLabel = "kata-deploy.bench=density"

// densityPoint is the host memory of N idle kata containers.
type densityPoint struct {
	N                     int
	QEMU, Shim, Virtiofsd int64         // PSS in KiB, summed over the N containers
	StartNth              time.Duration // docker run -d of the Nth container
	// Waiting is the PSS in KiB of the QEMU of the clone waiting in the pool (kata+pool), read
	// with the containers' and not in Total; 0 without a pool.
	Waiting int64
}

func (p densityPoint) Total() int64 { return p.QEMU + p.Shim + p.Virtiofsd }

// settle is how long idle guests are left to finish booting before memory is read.
const settle = 3 * time.Second

// density starts idle kata containers one after another and reads their host memory each time
// their number reaches one of counts; every container is removed afterwards. With waiting (a
// runtime with a pool of clones), each figure is read once the pool holds a waiting clone again,
// whose QEMU waiting returns: its PSS is read with the containers'.
func density(ctx context.Context, counts []int, runtime string, waiting func(context.Context) (int, error)) (points []densityPoint, err error) {
	removeLabelled()
	defer removeLabelled()
	var ids []string
	for n := 1; n <= counts[len(counts)-1]; n++ {
		start := time.Now()
		out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--label", densityLabel, "--runtime="+runtime, "busybox", "sleep", "1d").Output()
		took := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("starting idle container %d: %w", n, exitDetail(err))
		}
		ids = append(ids, strings.TrimSpace(string(out)))
		if !slices.Contains(counts, n) {
			continue
		}
		clone := 0
		if waiting != nil {
			if clone, err = waiting(ctx); err != nil {
				return nil, fmt.Errorf("with %d idle containers: %w", n, err)
			}
		}
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		p, err := measure(ctx, ids)
		if err != nil {
			return nil, err
		}
		p.StartNth = took
		if clone != 0 {
			if p.Waiting, err = pss(clone); err != nil {
				return nil, fmt.Errorf("the waiting clone: %w", err)
			}
		}
		points = append(points, p)
		if clone != 0 {
			fmt.Printf("  %d idle containers: %s, and the waiting clone's QEMU %s\n", n, mib(p.Total()), mib(p.Waiting))
		} else {
			fmt.Printf("  %d idle containers: %s\n", n, mib(p.Total()))
		}
	}
	return points, nil
}

// measure sums the PSS of every container's QEMU, shim and virtiofsd.
func measure(ctx context.Context, ids []string) (densityPoint, error) {
	p := densityPoint{N: len(ids)}
	ps, err := processes()
	if err != nil {
		return p, err
	}
	for _, id := range ids {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
		if err != nil {
			return p, fmt.Errorf("docker inspect %.12s: %w", id, exitDetail(err))
		}
		qemu, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil || qemu <= 0 {
			return p, fmt.Errorf("container %.12s has no pid (%q): is it running?", id, out)
		}
		shims, vfs := containerProcs(ps, id)
		if len(shims) == 0 {
			return p, fmt.Errorf("no containerd-shim-kata-v2 process for container %.12s", id)
		}
		for _, acc := range []struct {
			sum  *int64
			pids []int
		}{{&p.QEMU, []int{qemu}}, {&p.Shim, shims}, {&p.Virtiofsd, vfs}} {
			for _, pid := range acc.pids {
				v, err := pss(pid)
				if err != nil {
					return p, err
				}
				*acc.sum += v
			}
		}
	}
	return p, nil
}

func removeLabelled() {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+densityLabel).Output()
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
}

// exitDetail adds a failed command's stderr to its error.
func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
