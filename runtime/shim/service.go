// Package shim is the containerd shim v2 of the VM runtime (containerd-shim-kata-v2): it turns
// containerd's task API into a sandbox (one VM per container) and the guest agent's calls.
package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// DefaultConfigPath is used when Docker/containerd pass no ConfigPath option.
const DefaultConfigPath = layout.DefaultConfigPath

var empty = &ptypes.Empty{}

// service is the task service of one shim daemon. Docker runs one container per shim.
type service struct {
	publisher shim.Publisher
	shutdown  shutdown.Service
	events    chan any
	boot      bootFunc

	mu       sync.Mutex
	c        *container // nil before Create and after Delete
	deleted  *container // after Delete: its teardown may still be finishing
	creating bool       // a Create is booting the VM: the shim is taken
}

// NewTaskService is the constructor the TTRPC plugin registration calls.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TTRPCTaskService, error) {
	return newService(ctx, publisher, sd, bootQEMU), nil
}

// newService starts the task service's event forwarding; boot creates each container's sandbox.
func newService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, boot bootFunc) *service {
	s := &service{publisher: publisher, shutdown: sd, events: make(chan any, 128), boot: boot}
	go s.forward(ctx)
	// The shim exits once its sandbox is gone: a deleted container's teardown may still be
	// finishing (sandbox.Release).
	sd.RegisterCallback(func(context.Context) error {
		s.mu.Lock()
		c := s.c
		if c == nil {
			c = s.deleted
		}
		s.mu.Unlock()
		if c == nil {
			return nil
		}
		c.destroy(context.Background())
		err := c.sb.Destroy(context.Background())
		if err != nil {
			log.L.WithError(err).WithField("id", c.id).Warn("tearing the sandbox down")
		}
		return err
	})
	return s
}

// RegisterTTRPC registers the task service on containerd's server.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

func (s *service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil || s.c.id != id {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return s.c, nil
}

// getProcess returns the container and one of its processes ("" = the init).
func (s *service) getProcess(id, execID string) (*container, *process, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	return c, p, err
}

// Create boots the container's VM. The returned pid is QEMU's, which lives in the container's own
// network namespace: Docker wires the container's interfaces into /proc/<pid>/ns/net.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, err error) {
	if err := s.reserve(); err != nil {
		return nil, err
	}
	defer s.release()
	sb, err := s.boot(ctx, r)
	if err != nil {
		return nil, err
	}
	c := newContainer(r, sb)
	if err := c.init.attachIO(ctx); err != nil {
		c.destroy(context.WithoutCancel(ctx))
		return nil, err
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: sb.PID(),
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{Pid: sb.PID()}, nil
}

// reserve takes the shim for one Create: the VM boots for seconds, and a second Create meanwhile
// must not boot another one.
func (s *service) reserve() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil || s.creating {
		return fmt.Errorf("this shim already runs a container: %w", errdefs.ErrAlreadyExists)
	}
	s.creating = true
	return nil
}

func (s *service) release() {
	s.mu.Lock()
	s.creating = false
	s.mu.Unlock()
}

// loadConfig reads the runtime configuration named by the runtime options (Docker's daemon.json
// "options": {"ConfigPath": ...}), or the default path.
func loadConfig(r *taskAPI.CreateTaskRequest) (*config.Config, error) {
	path := DefaultConfigPath
	if env := os.Getenv("KATA_CONFIG_PATH"); env != "" {
		path = env
	}
	if r.Options != nil && r.Options.GetValue() != nil {
		v, err := typeurl.UnmarshalAny(r.Options)
		if err != nil {
			return nil, fmt.Errorf("decoding the runtime options: %w", err)
		}
		if opts, ok := v.(*runtimeoptions.Options); ok {
			if len(opts.ConfigBody) > 0 && opts.ConfigPath == "" {
				return config.Parse(opts.ConfigBody)
			}
			if opts.ConfigPath != "" {
				path = opts.ConfigPath
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		path = pinToOwnVersion(path, exe)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("loading the runtime configuration %s: %w", path, err)
	}
	return cfg, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the OCI spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("decoding the OCI spec: %w", err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("the OCI spec has no process to run")
	}
	return &spec, nil
}

// Start runs the container's process in the VM and begins waiting for its exit.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.ExecID == "" && p.status() == task.Status_CREATED {
		// Docker has configured the container's network namespace by now (Docker >= 26).
		if err := c.sb.StartNetwork(ctx, c.bundle, log.L.WithField("id", c.id).Warnf); err != nil {
			return nil, err
		}
	}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	go s.waitExit(c, p)
	if r.ExecID == "" {
		s.send(&eventstypes.TaskStart{ContainerID: c.id, Pid: c.pid()})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: uint32(p.guestPid)})
	}
	return &taskAPI.StartResponse{Pid: c.pid()}, nil
}

// waitExit publishes TaskExit once the process exited and its output is fully drained. When the
// init exits the VM is powered off: nothing runs in it any more.
func (s *service) waitExit(c *container, p *process) {
	status := p.wait()
	p.setExited(status)
	id := c.id
	if p.execID != "" {
		id = p.execID
	}
	_, at := p.exitStatus()
	if p == c.init && status == 128+int(syscall.SIGKILL) && c.oomKilled() {
		s.send(&eventstypes.TaskOOM{ContainerID: c.id}) // docker inspect: OOMKilled true
	}
	s.send(&eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: c.pid(), ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at),
	})
	if p == c.init {
		c.shutdownAfterInit(context.Background())
	}
}

// Delete removes the container: VM, mounts, state directory.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.ExecID != "" {
		if p.status() == task.Status_RUNNING {
			return nil, fmt.Errorf("exec %s is running: %w", r.ExecID, errdefs.ErrFailedPrecondition)
		}
		c.removeExec(r.ExecID)
		status, at := p.exitStatus()
		return &taskAPI.DeleteResponse{Pid: c.pid(), ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at)}, nil
	}
	if p.status() == task.Status_RUNNING {
		return nil, fmt.Errorf("container %s is running: stop it first: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if err := c.destroy(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("cleaning up the sandbox")
	}
	os.Remove(filepath.Join(c.bundle, bundleRecord))
	s.mu.Lock()
	s.c, s.deleted = nil, c
	s.mu.Unlock()
	status, at := p.exitStatus()
	s.send(&eventstypes.TaskDelete{ContainerID: c.id, Pid: c.pid(), ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at)})
	return &taskAPI.DeleteResponse{Pid: c.pid(), ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// State reports the container's status.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	status, at := p.exitStatus()
	return &taskAPI.StateResponse{
		ID: c.id, ExecID: r.ExecID, Bundle: c.bundle, Pid: c.pid(), Status: p.status(),
		Stdin: p.io.stdin, Stdout: p.io.stdout, Stderr: p.io.stderr, Terminal: p.io.terminal,
		ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at),
	}, nil
}

// Kill forwards a signal to the container's process in the VM.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	created := p.status() == task.Status_CREATED
	if err := c.kill(ctx, p, syscall.Signal(r.Signal), r.All); err != nil {
		return nil, err
	}
	if created && p.status() == task.Status_STOPPED {
		s.publishKilledBeforeStart(c, p)
	}
	return empty, nil
}

// publishKilledBeforeStart reports the exit of a process a kill ended before it started: no
// waitExit runs for it, and Docker learns of the exit only from this event (without it the
// container stays "running").
func (s *service) publishKilledBeforeStart(c *container, p *process) {
	id := c.id
	if p.execID != "" {
		id = p.execID
	}
	status, at := p.exitStatus()
	s.send(&eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: c.pid(), ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at),
	})
}

// Wait blocks until the container's process has exited.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	status, at := p.exitStatus()
	return &taskAPI.WaitResponse{ExitStatus: uint32(status), ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Pids lists the host processes of the task: the VM.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return &taskAPI.PidsResponse{Processes: []*task.ProcessInfo{{Pid: c.pid()}}}, nil
}

// CloseIO closes the process's stdin (the guest sees EOF).
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.closeStdin()
	}
	return empty, nil
}

// Pause freezes the VM's vCPUs.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.pause(ctx); err != nil {
		return nil, err
	}
	s.send(&eventstypes.TaskPaused{ContainerID: c.id})
	return empty, nil
}

// Resume thaws the VM.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	if err := c.resume(ctx); err != nil {
		return nil, err
	}
	s.send(&eventstypes.TaskResumed{ContainerID: c.id})
	return empty, nil
}

// Connect returns the shim's and the task's pids.
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if c, err := s.get(r.ID); err == nil {
		resp.TaskPid = c.pid()
	}
	return resp, nil
}

// Shutdown ends the shim daemon once it serves no container.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	busy := s.c != nil || s.creating
	s.mu.Unlock()
	if !busy {
		s.shutdown.Shutdown()
	}
	return empty, nil
}

// Stats returns the guest's basic figures.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	return c.stats(ctx)
}

// Exec creates an extra process in the running container (`docker exec`); Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("decoding the exec process spec: %w", err)
	}
	spec, ok := v.(*specs.Process)
	if !ok {
		return nil, fmt.Errorf("the exec spec is a %T, not an OCI process: %w", v, errdefs.ErrInvalidArgument)
	}
	io := stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	if _, err := c.addExec(ctx, r.ExecID, io, spec); err != nil {
		return nil, err
	}
	s.send(&eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}

// ResizePty resizes the container's terminal.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.resize(ctx, r.Width, r.Height); err != nil {
		return nil, err
	}
	return empty, nil
}

// Update changes the resources of a running container (docker update); see update.go.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	return s.update(ctx, r)
}

// Checkpoint is not offered for VM containers.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, fmt.Errorf("checkpointing a VM container: %w", errNotImplemented)
}

func (s *service) send(evt any) {
	select {
	case s.events <- evt:
	case <-s.shutdown.Done():
	}
}

// forward publishes events in order; after shutdown it drains what is queued, so a TaskExit sent
// just before the shim ends still reaches containerd.
func (s *service) forward(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	defer s.publisher.Close()
	publish := func(e any) {
		if err := s.publisher.Publish(ctx, runtime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).Error("publishing event")
		}
	}
	for {
		select {
		case e := <-s.events:
			publish(e)
		case <-s.shutdown.Done():
			for {
				select {
				case e := <-s.events:
					publish(e)
				default:
					return
				}
			}
		}
	}
}
