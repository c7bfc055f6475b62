package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// world is what the soak's containers share: a user network (name resolution between VMs, a
// gateway to reach) and a volume (written through the shared filesystem).
type world struct {
	engine  engine
	network string
	gateway string
	volume  string
}

func newWorld(ctx context.Context) (*world, error) {
	e, err := engineFromEnv()
	if err != nil {
		return nil, err
	}
	w := &world{engine: e, network: "kata-soak-net", volume: "kata-soak-vol"}
	// Leftovers of an interrupted run would make the first create fail.
	w.close()
	if _, err := docker(ctx, "network", "create", w.network); err != nil {
		return nil, err
	}
	if _, err := docker(ctx, "volume", "create", w.volume); err != nil {
		w.close()
		return nil, err
	}
	w.gateway, err = docker(ctx, "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", w.network)
	if err != nil || w.gateway == "" {
		w.close()
		return nil, fmt.Errorf("reading the gateway of %s: %v", w.network, err)
	}
	return w, nil
}

// close removes the network and the volume; containers named soak-* first.
func (w *world) close() {
	ctx := context.Background()
	if ids, err := docker(ctx, "ps", "-aq", "--filter", "name=^soak-"); err == nil && ids != "" {
		_, _ = docker(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	_, _ = docker(ctx, "network", "rm", w.network)
	_, _ = docker(ctx, "volume", "rm", w.volume)
}

// start runs an idle kata container on the soak's network with its volume.
func (w *world) start(ctx context.Context, name string) error {
	_, err := docker(ctx, "run", "-d", "--runtime", runtimeName, "--name", name,
		"--network", w.network, "-v", w.volume+":/data", "busybox", "sleep", "3600")
	return err
}

// use checks the container's volume, exec and network: it appends its name to a log on the
// volume and reads it back, then pings peer (a name resolved by Docker's DNS, or an address).
func (w *world) use(ctx context.Context, name, peer string) error {
	out, err := docker(ctx, "exec", name, "sh", "-c", "echo "+name+" >> /data/log && grep -c . /data/log")
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(out); err != nil || n < 1 {
		return fmt.Errorf("the volume's log reads %q after a write", out)
	}
	if _, err := docker(ctx, "exec", name, "ping", "-c", "1", "-W", "5", peer); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// cycle is one container's life: start, use, remove.
func (w *world) cycle(ctx context.Context, name string) error {
	defer docker(context.Background(), "rm", "-f", name) //nolint:errcheck // removal is checked by the leftovers
	if err := w.start(ctx, name); err != nil {
		return err
	}
	if err := w.use(ctx, name, w.gateway); err != nil {
		return err
	}
	_, err := docker(ctx, "rm", "-f", name)
	return err
}

// parallelCycles starts n containers at once; each then pings the next by name and uses the
// volume; then all are removed at once.
func (w *world) parallelCycles(ctx context.Context, n int) error {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("soak-par-%d", i)
	}
	defer func() {
		_ = eachAtOnce(names, func(_ int, name string) error {
			_, err := docker(context.Background(), "rm", "-f", name)
			return err
		})
	}()
	if err := eachAtOnce(names, func(_ int, name string) error { return w.start(ctx, name) }); err != nil {
		return err
	}
	if err := eachAtOnce(names, func(i int, name string) error {
		return w.use(ctx, name, names[(i+1)%n])
	}); err != nil {
		return err
	}
	return eachAtOnce(names, func(_ int, name string) error {
		_, err := docker(ctx, "rm", "-f", name)
		return err
	})
}

// eachAtOnce runs fn for every name concurrently and returns the first error, naming its item.
func eachAtOnce(names []string, fn func(int, string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(i, name); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// docker runs the docker CLI against the test engine and returns its trimmed output.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}
