package shim

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// guestAgent is what a process needs of the agent in its VM. The task service only talks to the
// guest through it, so the lifecycle can be tested without booting a VM.
type guestAgent interface {
	Stdio(ctx context.Context, containerID, execID, stream string) (io.ReadWriteCloser, error)
	Exec(ctx context.Context, containerID, execID string, p *specs.Process) error
	Start(ctx context.Context, containerID, execID string) (int, error)
	Wait(ctx context.Context, containerID, execID string) (int, error)
	Signal(ctx context.Context, containerID, execID string, sig syscall.Signal, all bool) error
	ResizePty(ctx context.Context, containerID, execID string, w, h uint32) error
	Stats(ctx context.Context, containerID string) (agentproto.Stats, error)
	// Unresponsive is non-nil while the guest lets calls run into their deadlines.
	Unresponsive() error
}

// vmSandbox is what the task service needs of a container's VM.
type vmSandbox interface {
	guestAgent
	// PID is the host pid of the VM: the task's pid, in the container's network namespace.
	PID() uint32
	StartNetwork(ctx context.Context, bundle string, logf func(format string, args ...any)) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// PowerOff kills the VM at once from the host, without asking the guest.
	PowerOff() error
	// UpdateResources applies the container's new limits (docker update); unchanged ones are a
	// no-op.
	UpdateResources(ctx context.Context, res *specs.LinuxResources) error
	// Release powers the VM off and releases what the container's removal waits for; the rest
	// of the teardown may go on in the background. Idempotent.
	Release(ctx context.Context) error
	// Destroy releases the sandbox and returns once everything it made on the host is gone.
	// Idempotent.
	Destroy(ctx context.Context) error
}

// bootFunc creates the sandbox of a Create request and returns once its agent answers.
type bootFunc func(ctx context.Context, r *taskAPI.CreateTaskRequest) (vmSandbox, error)

// qemuSandbox is the production vmSandbox: a QEMU VM and its agent's client.
type qemuSandbox struct {
	*agentproto.Client
	sb *sandbox.Sandbox
}

func (q qemuSandbox) PID() uint32                       { return uint32(q.sb.VM.PID) }
func (q qemuSandbox) Pause(ctx context.Context) error   { return q.sb.VM.Pause(ctx) }
func (q qemuSandbox) Resume(ctx context.Context) error  { return q.sb.VM.Resume(ctx) }
func (q qemuSandbox) PowerOff() error                   { return q.sb.VM.Kill() }
func (q qemuSandbox) Release(ctx context.Context) error { return q.sb.Release(ctx) }
func (q qemuSandbox) Destroy(ctx context.Context) error { return q.sb.Destroy(ctx) }
func (q qemuSandbox) UpdateResources(ctx context.Context, res *specs.LinuxResources) error {
	return q.sb.UpdateResources(ctx, res, log.G(ctx).WithField("id", q.sb.ID).Warnf)
}

// Start starts a process in the VM; once the container's own has, the pool of clones, if it gave
// this container its VM, is refilled: not earlier, not to slow the start down.
func (q qemuSandbox) Start(ctx context.Context, containerID, execID string) (int, error) {
	pid, err := q.Client.Start(ctx, containerID, execID)
	if execID == "" {
		q.sb.RefillPool()
	}
	return pid, err
}

func (q qemuSandbox) StartNetwork(ctx context.Context, bundle string, logf func(string, ...any)) error {
	return q.sb.StartNetwork(ctx, bundle, logf)
}

// bootQEMU loads the runtime configuration and the bundle's spec, records the state directory in
// the bundle for a later `delete`, and boots the VM.
func bootQEMU(ctx context.Context, r *taskAPI.CreateTaskRequest) (vmSandbox, error) {
	cfg, err := loadConfig(r)
	if err != nil {
		return nil, err
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	stateDir, err := sandbox.StateDir(cfg, r.ID)
	if err != nil {
		return nil, err
	}
	if err := writeRecord(r.Bundle, record{StateDir: stateDir}); err != nil {
		return nil, fmt.Errorf("recording the sandbox state directory: %w", err)
	}
	logger := log.G(ctx).WithField("id", r.ID)
	sb, err := sandbox.Create(ctx, sandbox.Options{ID: r.ID, Spec: spec, Config: cfg, Logf: logger.Warnf,
		RefillPool: func() { startPoolFill(cfg, logger.Warnf) }})
	if err != nil {
		os.Remove(filepath.Join(r.Bundle, bundleRecord))
		return nil, err
	}
	logger.Infof("VM booted in %s (accelerator %s, pid %d)", sb.BootTime.Round(time.Millisecond), sb.Accelerator, sb.VM.PID)
	return qemuSandbox{Client: sb.Agent, sb: sb}, nil
}
