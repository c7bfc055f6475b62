package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// errVMGone is what the fake agent answers once its VM was destroyed.
var errVMGone = errors.New("fake VM: destroyed")

// fakeProc is one process as the fake guest sees it.
type fakeProc struct {
	started bool
	exited  chan struct{}
	status  int
}

// fakeSandbox is a VM whose guest processes run only when the test says so: it starts, signals
// and exits them like the agent does, without QEMU.
type fakeSandbox struct {
	mu        sync.Mutex
	procs     map[string]*fakeProc // by exec id; "" is the init
	streams   map[string]net.Conn  // the guest's end of each stdio stream, by execID/stream
	destroyed chan struct{}
	destroys  int
	nextPid   int

	// A hostile or stopped guest: calls other than Wait block until their context ends.
	silent    bool
	dead      chan struct{} // closed by PowerOff
	powerOffs int
	statsCall int
	updates   []*specs.LinuxResources
}

func newFakeSandbox() *fakeSandbox {
	return &fakeSandbox{
		procs:     map[string]*fakeProc{"": {exited: make(chan struct{})}},
		streams:   map[string]net.Conn{},
		destroyed: make(chan struct{}),
		dead:      make(chan struct{}),
		nextPid:   1,
	}
}

func (f *fakeSandbox) PowerOff() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.powerOffs++
	if f.powerOffs == 1 {
		close(f.dead)
	}
	return nil
}

func (f *fakeSandbox) Unresponsive() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.silent {
		return errors.New("fake agent: silent")
	}
	return nil
}

// hang blocks a call of a silent guest until ctx ends.
func (f *fakeSandbox) hang(ctx context.Context) error {
	f.mu.Lock()
	silent := f.silent
	f.mu.Unlock()
	if !silent {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeSandbox) PID() uint32 { return 4242 }

func (f *fakeSandbox) StartNetwork(context.Context, string, func(string, ...any)) error { return nil }
func (f *fakeSandbox) Pause(context.Context) error                                      { return f.alive() }
func (f *fakeSandbox) Resume(context.Context) error                                     { return f.alive() }

// Release powers the fake VM off; destroys counts the power-offs (one, however often called).
func (f *fakeSandbox) Release(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.destroys == 0 {
		close(f.destroyed)
	}
	f.destroys = 1
	return nil
}

func (f *fakeSandbox) Destroy(ctx context.Context) error { return f.Release(ctx) }

func (f *fakeSandbox) alive() error {
	select {
	case <-f.destroyed:
		return errVMGone
	case <-f.dead:
		return errVMGone
	default:
		return nil
	}
}

// proc returns a process of the guest; the caller holds f.mu.
func (f *fakeSandbox) proc(execID string) (*fakeProc, error) {
	if err := f.alive(); err != nil {
		return nil, err
	}
	p, ok := f.procs[execID]
	if !ok {
		return nil, fmt.Errorf("fake agent: no process %q", execID)
	}
	return p, nil
}

func (f *fakeSandbox) Stdio(_ context.Context, _, execID, stream string) (io.ReadWriteCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.proc(execID); err != nil {
		return nil, err
	}
	guest, host := net.Pipe()
	f.streams[execID+"/"+stream] = guest
	return host, nil
}

func (f *fakeSandbox) Exec(_ context.Context, _, execID string, _ *specs.Process) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.alive(); err != nil {
		return err
	}
	if _, ok := f.procs[execID]; ok {
		return fmt.Errorf("fake agent: process %q exists", execID)
	}
	f.procs[execID] = &fakeProc{exited: make(chan struct{})}
	return nil
}

func (f *fakeSandbox) Start(_ context.Context, _, execID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.proc(execID)
	if err != nil {
		return 0, err
	}
	if p.started {
		return 0, fmt.Errorf("fake agent: process %q already started", execID)
	}
	p.started = true
	f.nextPid++
	return f.nextPid, nil
}

func (f *fakeSandbox) Wait(ctx context.Context, _, execID string) (int, error) {
	f.mu.Lock()
	p, err := f.proc(execID)
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case <-p.exited: // an exit already known wins over a later power-off
		return p.status, nil
	default:
	}
	select {
	case <-p.exited:
		return p.status, nil
	case <-f.destroyed:
		return 0, errVMGone
	case <-f.dead:
		return 0, errVMGone
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Signal ends a started process on SIGKILL and SIGTERM, as a shell without traps would.
func (f *fakeSandbox) Signal(ctx context.Context, _, execID string, sig syscall.Signal, _ bool) error {
	if err := f.hang(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, err := f.proc(execID)
	if err != nil {
		return err
	}
	if p.started && (sig == syscall.SIGKILL || sig == syscall.SIGTERM) {
		f.exitLocked(execID, 128+int(sig))
	}
	return nil
}

func (f *fakeSandbox) ResizePty(context.Context, string, string, uint32, uint32) error {
	return f.alive()
}

func (f *fakeSandbox) Stats(ctx context.Context, _ string) (agentproto.Stats, error) {
	f.mu.Lock()
	f.statsCall++
	f.mu.Unlock()
	if err := f.hang(ctx); err != nil {
		return agentproto.Stats{}, err
	}
	return agentproto.Stats{Pids: 1, MemoryUsageBytes: 4096}, f.alive()
}

// exit ends a process with status; the init takes every exec process with it (its pid namespace
// is gone), as in the guest.
func (f *fakeSandbox) exit(execID string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitLocked(execID, status)
}

func (f *fakeSandbox) exitLocked(execID string, status int) {
	p, ok := f.procs[execID]
	if !ok {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	p.status = status
	close(p.exited)
	if execID == "" {
		for id := range f.procs {
			if id != "" {
				f.exitLocked(id, 128+int(syscall.SIGKILL))
			}
		}
	}
}

func (f *fakeSandbox) stream(execID, name string) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams[execID+"/"+name]
}

func (f *fakeSandbox) destroyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.destroys
}

// fakePublisher records the events the service publishes.
type fakePublisher struct {
	mu     sync.Mutex
	events []events.Event
}

func (p *fakePublisher) Publish(_ context.Context, _ string, e events.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
	return nil
}

func (p *fakePublisher) Close() error { return nil }

func (p *fakePublisher) snapshot() []events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]events.Event(nil), p.events...)
}

// exits counts the TaskExit events published for a process (the init's ID is the container's).
func (p *fakePublisher) exits(id string) int {
	n := 0
	for _, e := range p.snapshot() {
		if x, ok := e.(*eventstypes.TaskExit); ok && x.ID == id {
			n++
		}
	}
	return n
}

// waitFor polls until cond holds for the published events, or fails the test after 5 s.
func (p *fakePublisher) waitFor(t testing.TB, what string, cond func([]events.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond(p.snapshot()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events: %v", what, p.snapshot())
		}
		time.Sleep(time.Millisecond)
	}
}

// harness is a task service whose sandboxes are fakes.
type harness struct {
	s      *service
	pub    *fakePublisher
	bundle string
	onBoot func() // runs in every boot, before the sandbox is made

	mu  sync.Mutex
	sbs []*fakeSandbox // every sandbox booted, last is the current one
}

func newHarness(t testing.TB) *harness {
	ctx, sd := shutdown.WithShutdown(context.Background())
	h := &harness{pub: &fakePublisher{}, bundle: t.TempDir()}
	h.s = newService(ctx, h.pub, sd, h.boot)
	t.Cleanup(func() {
		sd.Shutdown()
		<-sd.Done()
	})
	return h
}

func (h *harness) boot(context.Context, *taskAPI.CreateTaskRequest) (vmSandbox, error) {
	if h.onBoot != nil {
		h.onBoot()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sb := newFakeSandbox()
	h.sbs = append(h.sbs, sb)
	return sb, nil
}

// sb is the sandbox booted last.
func (h *harness) sb() *fakeSandbox {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sbs) == 0 {
		return nil
	}
	return h.sbs[len(h.sbs)-1]
}

func (f *fakeSandbox) UpdateResources(_ context.Context, res *specs.LinuxResources) error {
	if err := f.alive(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, res)
	return nil
}
