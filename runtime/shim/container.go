package shim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cgroupstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// Bounds of the calls the shim makes on Docker's behalf: none of them may wait on the guest for
// long, since dockerd serves some of them one container at a time.
const (
	// killGrace is how long a SIGKILL of the init may take before the VM is powered off from the
	// host.
	killGrace = 5 * time.Second
	// execKillDrain is how long a SIGKILL of an exec process waits for its exit and its output.
	execKillDrain = time.Second
	// statsTimeout bounds asking the guest for `docker stats`; the last figures answer otherwise.
	statsTimeout = 5 * time.Second
)

// container is the one container of this shim, its VM and its processes.
type container struct {
	id, bundle string
	sb         vmSandbox
	vmPid      uint32
	init       *process

	mu      sync.Mutex
	execs   map[string]*process
	cleanup sync.Once
	err     error

	paused     atomic.Bool // the VM's vCPUs are stopped: the guest cannot answer
	statsMu    sync.Mutex
	lastStats  agentproto.Stats // the guest's last answer, for a paused or unresponsive guest
	refreshing bool             // a background stats call is under way
}

func newContainer(r *taskAPI.CreateTaskRequest, sb vmSandbox) *container {
	io := stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	return &container{
		id: r.ID, bundle: r.Bundle, sb: sb, vmPid: sb.PID(),
		init:  newProcess(sb, r.ID, "", io),
		execs: map[string]*process{},
	}
}

func (c *container) pid() uint32 { return c.vmPid }

// process returns the init ("") or an exec process.
func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.execs[execID]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, errdefs.ErrNotFound)
}

// addExec creates an exec process in the guest and attaches its stdio; it starts at Start.
func (c *container) addExec(ctx context.Context, execID string, io stdio, spec *specs.Process) (*process, error) {
	if c.init.status() != task.Status_RUNNING {
		return nil, fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	c.mu.Lock()
	if _, ok := c.execs[execID]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %s: %w", execID, errdefs.ErrAlreadyExists)
	}
	p := newProcess(c.sb, c.id, execID, io)
	c.execs[execID] = p
	c.mu.Unlock()
	err := c.sb.Exec(ctx, c.id, execID, spec)
	if err == nil {
		err = p.attachIO(ctx)
	}
	if err != nil {
		c.removeExec(execID)
		return nil, fmt.Errorf("creating exec %s in the VM: %w", execID, err)
	}
	return p, nil
}

func (c *container) removeExec(execID string) {
	c.mu.Lock()
	delete(c.execs, execID)
	c.mu.Unlock()
}

// runningExecs returns the exec processes that have not exited yet.
func (c *container) runningExecs() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []*process
	for _, p := range c.execs {
		if p.status() != task.Status_STOPPED {
			ps = append(ps, p)
		}
	}
	return ps
}

// kill signals a process in the guest. A SIGKILL of the init never depends on the guest: unless
// the init's exit is seen within killGrace, the VM is powered off from the host.
func (c *container) kill(ctx context.Context, p *process, sig syscall.Signal, all bool) error {
	select {
	case <-p.exited:
		return fmt.Errorf("process %q of %s has exited: %w", p.execID, c.id, errdefs.ErrNotFound)
	default:
	}
	if !p.isStarted() {
		// Nothing runs yet: killing a created process ends it.
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			p.setExited(128 + int(sig))
			if p == c.init {
				return c.destroy(ctx)
			}
		}
		return nil
	}
	if sig != syscall.SIGKILL || p != c.init {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.sb.Signal(sctx, c.id, p.execID, sig, all); err != nil {
			return err
		}
		if sig == syscall.SIGKILL && p != c.init {
			p.awaitKilledExec()
		}
		return nil
	}
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), killGrace)
	defer cancel()
	var err error
	if c.paused.Load() {
		err = errors.New("the VM is paused")
	} else if err = c.sb.Signal(grace, c.id, p.execID, sig, all); err == nil {
		select {
		case <-p.exited:
			return nil
		case <-grace.Done():
			err = fmt.Errorf("no exit within %s", killGrace)
		}
	}
	log.G(ctx).WithError(err).WithField("id", c.id).Warn("SIGKILL: powering the VM off from the host")
	p.markKilled()
	if perr := c.sb.PowerOff(); perr != nil {
		// The process is gone or cannot be signalled: tear everything down.
		log.G(ctx).WithError(perr).WithField("id", c.id).Warn("powering the VM off")
		return c.destroy(ctx)
	}
	return nil
}

// shutdownAfterInit powers the VM off once the init exited: the pid namespace is gone, so exec
// processes die with it; their exits are given a moment to be reported first.
func (c *container) shutdownAfterInit(ctx context.Context) {
	deadline := time.After(3 * time.Second)
	for _, p := range c.runningExecs() {
		select {
		case <-p.exited:
		case <-deadline:
		}
	}
	if err := c.destroy(ctx); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("tearing the VM down")
	}
}

// destroy powers the VM off and releases what the container's removal waits for
// (sandbox.Release); the rest of the teardown may still be under way (wait for it with
// sb.Destroy). Idempotent.
func (c *container) destroy(ctx context.Context) error {
	c.cleanup.Do(func() {
		c.init.closeStdin()
		for _, p := range c.runningExecs() {
			p.closeStdin()
		}
		c.err = c.sb.Release(ctx)
	})
	return c.err
}

func (c *container) pause(ctx context.Context) error {
	if c.init.status() != task.Status_RUNNING {
		return fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.sb.Pause(ctx); err != nil {
		return err
	}
	c.paused.Store(true)
	return nil
}

func (c *container) resume(ctx context.Context) error {
	if c.init.status() == task.Status_STOPPED {
		return fmt.Errorf("container %s has exited: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.sb.Resume(ctx); err != nil {
		return err
	}
	c.paused.Store(false)
	return nil
}

// oomKilled tells whether the guest kernel's OOM killer struck: the guest runs one container, so
// a SIGKILL together with an OOM kill in the guest is the container's out-of-memory death.
func (c *container) oomKilled() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.sb.Stats(ctx, "")
	return err == nil && st.OOMKills > 0
}

// stats reports the guest's figures in the cgroup v1 metrics format Docker decodes for
// `docker stats`: the VM is the container's resource boundary.
func (c *container) stats(ctx context.Context) (*taskAPI.StatsResponse, error) {
	if c.init.status() == task.Status_STOPPED {
		return nil, fmt.Errorf("container %s has exited: %w", c.id, errdefs.ErrNotFound)
	}
	st, err := c.guestStats(ctx)
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

// guestStats asks the guest within statsTimeout. A paused VM is not asked, and a guest marked
// unresponsive is asked in the background only: both answer at once with the last figures, so that
// one VM never stalls `docker stats` (dockerd collects containers one at a time).
func (c *container) guestStats(ctx context.Context) (agentproto.Stats, error) {
	if c.paused.Load() {
		return c.cachedStats(), nil
	}
	if c.sb.Unresponsive() != nil {
		c.refreshStats()
		return c.cachedStats(), nil
	}
	sctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	st, err := c.sb.Stats(sctx, c.id)
	if err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return c.cachedStats(), nil // the guest did not answer in time
		}
		return agentproto.Stats{}, err
	}
	c.statsMu.Lock()
	c.lastStats = st
	c.statsMu.Unlock()
	return st, nil
}

func (c *container) cachedStats() agentproto.Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return c.lastStats
}

// refreshStats asks the guest in the background, one call at a time: an answer updates the figures
// and marks the guest responsive again.
func (c *container) refreshStats() {
	c.statsMu.Lock()
	if c.refreshing {
		c.statsMu.Unlock()
		return
	}
	c.refreshing = true
	c.statsMu.Unlock()
	go func() {
		st, err := c.sb.Stats(context.Background(), c.id) // bounded by the call's default deadline
		c.statsMu.Lock()
		if err == nil {
			c.lastStats = st
		}
		c.refreshing = false
		c.statsMu.Unlock()
	}()
}
