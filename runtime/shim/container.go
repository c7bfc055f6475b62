package shim

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	cgroupstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// stdio are the FIFO paths containerd gave for the container's standard streams.
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

// container is the one container of this shim and its VM.
type container struct {
	id, bundle string
	io         stdio
	sb         *sandbox.Sandbox
	vmPid      uint32

	stdinOnce   sync.Once
	stdinStream io.WriteCloser
	outputDone  sync.WaitGroup // stdout/stderr fully copied to their FIFOs

	mu       sync.Mutex
	started  bool
	exited   chan struct{} // closed once the exit status is known
	code     int
	exitTime time.Time
	killed   bool // we powered the VM off ourselves (SIGKILL fallback)
	cleanup  sync.Once
}

func newContainer(r *taskAPI.CreateTaskRequest, sb *sandbox.Sandbox) *container {
	return &container{
		id: r.ID, bundle: r.Bundle, sb: sb, vmPid: uint32(sb.VM.PID),
		io:     stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal},
		exited: make(chan struct{}),
	}
}

func (c *container) pid() uint32 { return c.vmPid }

// attachIO connects containerd's FIFOs to the agent's streams before the process starts, so no
// output is lost.
func (c *container) attachIO(ctx context.Context) error {
	outputs := []struct{ path, name string }{{c.io.stdout, "stdout"}}
	if !c.io.terminal {
		outputs = append(outputs, struct{ path, name string }{c.io.stderr, "stderr"})
	}
	for _, o := range outputs {
		if o.path == "" {
			continue
		}
		if err := c.attachOutput(ctx, o.path, o.name); err != nil {
			return err
		}
	}
	if c.io.stdin == "" {
		return nil
	}
	in, err := fifo.OpenFifo(ctx, c.io.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening the stdin FIFO: %w", err)
	}
	stream, err := c.sb.Agent.Stdio(ctx, c.id, "", "stdin")
	if err != nil {
		in.Close()
		return fmt.Errorf("attaching stdin in the VM: %w", err)
	}
	c.stdinStream = stream
	go func() {
		_, _ = io.Copy(stream, in)
		in.Close()
		c.closeStdin()
	}()
	return nil
}

func (c *container) attachOutput(ctx context.Context, path, name string) error {
	out, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening the %s FIFO: %w", name, err)
	}
	stream, err := c.sb.Agent.Stdio(ctx, c.id, "", name)
	if err != nil {
		out.Close()
		return fmt.Errorf("attaching %s in the VM: %w", name, err)
	}
	c.outputDone.Add(1)
	go func() {
		defer c.outputDone.Done()
		_, _ = io.Copy(out, stream)
		stream.Close()
		out.Close()
	}()
	return nil
}

// closeStdin half-closes the stdin stream: the process in the guest reads EOF.
func (c *container) closeStdin() {
	c.stdinOnce.Do(func() {
		if c.stdinStream != nil {
			c.stdinStream.Close()
		}
	})
}

func (c *container) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return fmt.Errorf("container %s already started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	select {
	case <-c.exited:
		return fmt.Errorf("container %s was killed before it started: %w", c.id, errdefs.ErrFailedPrecondition)
	default:
	}
	if _, err := c.sb.Agent.Start(ctx, c.id, ""); err != nil {
		return fmt.Errorf("starting the container's process in the VM: %w", err)
	}
	c.started = true
	return nil
}

// waitProcess blocks until the process exited and its output has been drained, and returns its
// exit status. A VM that dies under the process gives 255 (137 if we killed it).
func (c *container) waitProcess() int {
	status, err := c.sb.Agent.Wait(context.Background(), c.id, "")
	if err != nil {
		log.L.WithError(err).WithField("id", c.id).Warn("lost the VM while waiting for the container")
		status = 255
		c.mu.Lock()
		if c.killed {
			status = 128 + int(syscall.SIGKILL)
		}
		c.mu.Unlock()
	}
	drained := make(chan struct{})
	go func() { c.outputDone.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		log.L.WithField("id", c.id).Warn("output streams did not drain within 10s")
	}
	return status
}

func (c *container) setExited(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.exited:
		return
	default:
	}
	c.code, c.exitTime = status, time.Now()
	close(c.exited)
}

func (c *container) exitStatus() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.exitTime
}

func (c *container) exitedAt() time.Time { _, t := c.exitStatus(); return t }

func (c *container) status() task.Status {
	select {
	case <-c.exited:
		return task.Status_STOPPED
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return task.Status_RUNNING
	}
	return task.Status_CREATED
}

// kill signals the process in the guest. Should the agent not answer to a SIGKILL, the VM itself
// is powered off: SIGKILL must always end the container.
func (c *container) kill(ctx context.Context, sig syscall.Signal, all bool) error {
	select {
	case <-c.exited:
		return fmt.Errorf("container %s has exited: %w", c.id, errdefs.ErrNotFound)
	default:
	}
	if !c.isStarted() {
		// Nothing runs yet: killing a created container ends it.
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			c.setExited(128 + int(sig))
			return c.destroy(ctx)
		}
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := c.sb.Agent.Signal(sctx, c.id, "", sig, all)
	if err == nil || sig != syscall.SIGKILL {
		return err
	}
	log.G(ctx).WithError(err).Warn("the agent did not take SIGKILL: powering the VM off")
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	return c.stopVM(ctx)
}

func (c *container) isStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

// stopVM powers the VM off and releases everything on the host; after the process exited nothing
// needs the VM any more. Idempotent.
func (c *container) stopVM(ctx context.Context) error { return c.destroy(ctx) }

func (c *container) destroy(ctx context.Context) error {
	var err error
	c.cleanup.Do(func() {
		c.closeStdin()
		err = c.sb.Destroy(ctx)
	})
	return err
}

func (c *container) pause(ctx context.Context) error {
	if c.status() != task.Status_RUNNING {
		return fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	return c.sb.VM.Pause(ctx)
}

func (c *container) resume(ctx context.Context) error {
	if c.status() == task.Status_STOPPED {
		return fmt.Errorf("container %s has exited: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	return c.sb.VM.Resume(ctx)
}

func (c *container) resize(ctx context.Context, w, h uint32) error {
	if !c.io.terminal {
		return nil
	}
	return c.sb.Agent.ResizePty(ctx, c.id, "", w, h)
}

// stats reports the guest's figures in the cgroup v1 metrics format Docker decodes for
// `docker stats`: the VM is the container's resource boundary.
func (c *container) stats(ctx context.Context) (*taskAPI.StatsResponse, error) {
	if c.status() == task.Status_STOPPED {
		return nil, fmt.Errorf("container %s has exited: %w", c.id, errdefs.ErrNotFound)
	}
	st, err := c.sb.Agent.Stats(ctx, c.id)
	if err != nil {
		return nil, fmt.Errorf("reading the guest's statistics: %w", err)
	}
	metrics := &cgroupstats.Metrics{
		Pids: &cgroupstats.PidsStat{Current: uint64(st.Pids)},
		// Throttling must be set: dockerd 29 dereferences it unchecked and crashes otherwise.
		CPU:    &cgroupstats.CPUStat{Usage: &cgroupstats.CPUUsage{Total: st.CPUUsageNs}, Throttling: &cgroupstats.Throttle{}},
		Memory: &cgroupstats.MemoryStat{Usage: &cgroupstats.MemoryEntry{Usage: st.MemoryUsageBytes, Limit: st.MemoryLimitBytes}},
	}
	data, err := typeurl.MarshalAnyToProto(metrics)
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: data}, nil
}
