package dockerapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Container is a running container, as the installer reports it.
type Container struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Image string `json:"image"`
}

// ContainersUsing lists the running containers started with runtime name. The runtime is only
// in each container's HostConfig, so every running container is inspected.
func (e *Engine) ContainersUsing(ctx context.Context, runtime string) ([]Container, error) {
	list, err := e.cli.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Docker's containers: %w", err)
	}
	var out []Container
	for _, c := range list {
		in, err := e.cli.ContainerInspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // exited and removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("inspecting container %.12s: %w", c.ID, err)
		}
		if in.HostConfig != nil && in.HostConfig.Runtime == runtime {
			out = append(out, Container{ID: c.ID[:min(12, len(c.ID))], Name: strings.TrimPrefix(in.Name, "/"), Image: c.Image})
		}
	}
	return out, nil
}

// HasImage reports whether the image is present locally (nothing is pulled).
func (e *Engine) HasImage(ctx context.Context, ref string) (bool, error) {
	_, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// RunOptions describe a short-lived container.
type RunOptions struct {
	Runtime string
	Image   string
	Cmd     []string
	Timeout time.Duration // for the whole run; 2 minutes when zero
}

// RunResult is the outcome of Run.
type RunResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
	// Duration is from the start request to the container's exit: the VM's boot, the command and
	// the power-off, as a user of `docker run` experiences it.
	Duration time.Duration
}

// Run is `docker run --rm --runtime=R IMAGE CMD...` through the Engine API: create, start, wait,
// collect the output, remove (also on failure).
func (e *Engine) Run(ctx context.Context, o RunOptions) (RunResult, error) {
	var res RunResult
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	created, err := e.cli.ContainerCreate(ctx,
		&container.Config{Image: o.Image, Cmd: o.Cmd, Labels: map[string]string{"io.kata-deploy.smoke": "true"}},
		&container.HostConfig{Runtime: o.Runtime}, nil, nil, "kata-deploy-smoke-"+randomSuffix())
	if err != nil {
		return res, fmt.Errorf("creating a container with runtime %q from %s: %w", o.Runtime, o.Image, err)
	}
	defer func() {
		// A fresh context: the run's may have expired, and the container must go either way.
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rcancel()
		_ = e.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true})
	}()
	start := time.Now()
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return res, fmt.Errorf("starting a container with runtime %q: %w", o.Runtime, err)
	}
	waitC, errC := e.cli.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		res.Duration = time.Since(start)
		res.ExitCode = int(w.StatusCode)
		if w.Error != nil && w.Error.Message != "" {
			return res, fmt.Errorf("waiting for the container: %s", w.Error.Message)
		}
	case err := <-errC:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return res, fmt.Errorf("the container with runtime %q did not finish within %s", o.Runtime, timeout)
		}
		return res, fmt.Errorf("waiting for the container: %w", err)
	}
	return res, e.collectLogs(ctx, created.ID, &res)
}

func (e *Engine) collectLogs(ctx context.Context, id string, res *RunResult) error {
	rc, err := e.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Errorf("reading the container's output: %w", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		return fmt.Errorf("reading the container's output: %w", err)
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	return nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
