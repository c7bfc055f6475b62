package shim

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// stdio are the FIFO paths containerd gave for a process's standard streams.
type stdio struct {
	stdin, stdout, stderr string
	terminal              bool
}

// process is one process of the container in the guest: the init (execID "") or a `docker exec`.
type process struct {
	containerID, execID string
	io                  stdio
	agent               guestAgent

	stdinOnce   sync.Once
	stdinStream io.WriteCloser
	outputDone  sync.WaitGroup // stdout/stderr fully copied to their FIFOs

	mu       sync.Mutex
	started  bool
	guestPid int
	exited   chan struct{} // closed once the exit status is known
	code     int
	exitTime time.Time
	killed   bool // the VM was powered off by us (SIGKILL fallback): report 137, not 255
}

func newProcess(agent guestAgent, containerID, execID string, io stdio) *process {
	return &process{containerID: containerID, execID: execID, io: io, agent: agent, exited: make(chan struct{})}
}

// attachIO connects containerd's FIFOs to the agent's streams before the process starts, so no
// output is lost.
func (p *process) attachIO(ctx context.Context) error {
	outputs := []struct{ path, name string }{{p.io.stdout, agentproto.StreamStdout}}
	if !p.io.terminal { // a terminal has one output stream
		outputs = append(outputs, struct{ path, name string }{p.io.stderr, agentproto.StreamStderr})
	}
	for _, o := range outputs {
		if o.path == "" {
			continue
		}
		if err := p.attachOutput(ctx, o.path, o.name); err != nil {
			return err
		}
	}
	if p.io.stdin == "" {
		return nil
	}
	in, err := fifo.OpenFifo(ctx, p.io.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("opening the stdin FIFO: %w", err)
	}
	stream, err := p.agent.Stdio(ctx, p.containerID, p.execID, agentproto.StreamStdin)
	if err != nil {
		in.Close()
		return fmt.Errorf("attaching stdin in the VM: %w", err)
	}
	p.stdinStream = stream
	go func() {
		_, _ = io.Copy(stream, in)
		in.Close()
		p.closeStdin()
	}()
	return nil
}

func (p *process) attachOutput(ctx context.Context, path, name string) error {
	out, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening the %s FIFO: %w", name, err)
	}
	stream, err := p.agent.Stdio(ctx, p.containerID, p.execID, name)
	if err != nil {
		out.Close()
		return fmt.Errorf("attaching %s in the VM: %w", name, err)
	}
	p.outputDone.Add(1)
	go func() {
		defer p.outputDone.Done()
		_, _ = io.Copy(out, stream)
		stream.Close()
		out.Close()
	}()
	return nil
}

// closeStdin half-closes the stdin stream: the process in the guest reads EOF.
func (p *process) closeStdin() {
	p.stdinOnce.Do(func() {
		if p.stdinStream != nil {
			p.stdinStream.Close()
		}
	})
}

func (p *process) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return fmt.Errorf("process %q already started: %w", p.execID, errdefs.ErrFailedPrecondition)
	}
	select {
	case <-p.exited:
		return fmt.Errorf("process %q was killed before it started: %w", p.execID, errdefs.ErrFailedPrecondition)
	default:
	}
	pid, err := p.agent.Start(ctx, p.containerID, p.execID)
	if err != nil {
		return fmt.Errorf("starting the process in the VM: %w", err)
	}
	p.started, p.guestPid = true, pid
	return nil
}

// wait blocks until the process exited and its output has been drained, and returns its exit
// status. A VM that dies under the process gives 255 (137 if we killed it).
func (p *process) wait() int {
	status, err := p.agent.Wait(context.Background(), p.containerID, p.execID)
	if err != nil {
		log.L.WithError(err).WithField("id", p.containerID).WithField("exec", p.execID).Warn("lost the VM while waiting for the process")
		status = 255
		p.mu.Lock()
		if p.killed {
			status = 128 + int(syscall.SIGKILL)
		}
		p.mu.Unlock()
	}
	drained := make(chan struct{})
	go func() { p.outputDone.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		log.L.WithField("id", p.containerID).Warn("output streams did not drain within 10s")
	}
	return status
}

func (p *process) setExited(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
		return
	default:
	}
	p.code, p.exitTime = status, time.Now()
	close(p.exited)
}

func (p *process) exitStatus() (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, p.exitTime
}

func (p *process) status() task.Status {
	select {
	case <-p.exited:
		return task.Status_STOPPED
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return task.Status_RUNNING
	}
	return task.Status_CREATED
}

func (p *process) isStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

func (p *process) markKilled() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
}

func (p *process) resize(ctx context.Context, w, h uint32) error {
	if !p.io.terminal {
		return nil
	}
	return p.agent.ResizePty(ctx, p.containerID, p.execID, w, h)
}

// awaitKilledExec waits, within execKillDrain, until a SIGKILLed exec process has exited and the
// output it wrote before has reached its FIFOs. Docker reads an exec's output as soon as its kill
// returns (a health check that timed out reports what the probe printed): under runc that output
// is already there, while here it may still be on its way from the guest. A process whose output
// stays open (a child holding it) is not waited for longer.
func (p *process) awaitKilledExec() {
	select {
	case <-p.exited:
	case <-time.After(execKillDrain):
	}
}
