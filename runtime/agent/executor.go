package agent

import (
	"context"
	"io"
	"syscall"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Executor does the operating-system work for the Server: mounting shares and
// creating processes. NSExecutor is the real one; tests use a fake.
type Executor interface {
	// MountShare mounts a host share at its guest path.
	MountShare(ctx context.Context, s agentproto.Share) error
	// CreateInit prepares a container's first process in new namespaces. It
	// must not execute the user's program before Process.Start.
	CreateInit(ctx context.Context, id string, spec *specs.Spec, seccomp *agentproto.Seccomp) (Process, error)
	// CreateExec prepares another process in init's container.
	CreateExec(ctx context.Context, init Process, p *specs.Process) (Process, error)
	// Stats reports guest-wide usage.
	Stats() (agentproto.Stats, error)
	// Shutdown unmounts the shares and syncs; processes are dead by then.
	Shutdown(ctx context.Context) error
	// WarmRootfs makes the rootfs of the throwaway container (OpWarm): the agent's own binary
	// at /w; cleanup removes it.
	WarmRootfs() (rootfs string, cleanup func(), err error)
	// SyncFS writes the guest's file systems out (sync(2)).
	SyncFS() error
	// WarmNetwork runs the guest's network configuration once, with nothing to configure, and
	// brings the cards up and down (OpWarm).
	WarmNetwork() error
	// PrepareInit starts the next container's init ahead, for CreateInit to use if it still
	// fits then (OpWarm, spareinit.go).
	PrepareInit() error
}

// Process is one prepared or running process.
type Process interface {
	// Pid is the guest pid.
	Pid() int
	// Stdio returns the agent's ends of the process's stdio. With a
	// terminal, Stdin and Stdout are the pty master and Stderr is nil.
	Stdio() Stdio
	// Start lets the prepared process execute its program.
	Start() error
	// Exited is closed when the process has exited; ExitStatus is valid then.
	Exited() <-chan struct{}
	// ExitStatus is the exit code or 128+signal.
	ExitStatus() int
	// Signal signals the process.
	Signal(sig syscall.Signal) error
	// SignalAll signals every process of the container (init only).
	SignalAll(sig syscall.Signal) error
	// Pids lists the container's processes (init only).
	Pids() ([]int, error)
	// Resize sets the terminal size; an error without a terminal.
	Resize(width, height uint32) error
}

// Stdio is the agent's side of a process's standard streams.
type Stdio struct {
	Stdin    io.WriteCloser
	Stdout   io.ReadCloser
	Stderr   io.ReadCloser
	Terminal bool
}
