package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agent"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// script is what a fake process runs once started: its stdio and the
// signals sent to it; it returns the exit status.
type script func(in io.Reader, out, errOut *os.File, sigs <-chan syscall.Signal) int

// fakeExecutor runs Go functions instead of programs, chosen by args[0].
type fakeExecutor struct {
	scripts map[string]script

	mu       sync.Mutex
	mounts   []agentproto.Share
	nextPid  int
	shutdown bool
	// warmRootfs counts the throwaway containers' rootfs made and not cleaned up.
	warmRootfs  int
	prepareInit int
	warmNetwork int
	syncs       int                   // SyncFS calls
	inits       []*specs.Spec         // the specs of the containers created
	seccomps    []*agentproto.Seccomp // their compiled filters, as received
}

func (f *fakeExecutor) MountShare(ctx context.Context, s agentproto.Share) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts = append(f.mounts, s)
	return nil
}

func (f *fakeExecutor) CreateInit(ctx context.Context, id string, spec *specs.Spec, seccomp *agentproto.Seccomp) (agent.Process, error) {
	f.mu.Lock()
	f.inits = append(f.inits, spec)
	f.seccomps = append(f.seccomps, seccomp)
	f.mu.Unlock()
	return f.create(spec.Process)
}

func (f *fakeExecutor) CreateExec(ctx context.Context, init agent.Process, p *specs.Process) (agent.Process, error) {
	return f.create(p)
}

func (f *fakeExecutor) create(p *specs.Process) (agent.Process, error) {
	s, ok := f.scripts[p.Args[0]]
	if !ok {
		return nil, errors.New("no such fake program " + p.Args[0])
	}
	f.mu.Lock()
	f.nextPid++
	pid := 100 + f.nextPid
	f.mu.Unlock()
	fp := &fakeProcess{pid: pid, run: s, start: make(chan struct{}), exited: make(chan struct{}), sigs: make(chan syscall.Signal, 8)}
	var err error
	var inR, outR, errR *os.File
	if inR, fp.inW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if outR, fp.outW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if errR, fp.errW, err = os.Pipe(); err != nil {
		return nil, err
	}
	fp.stdio = agent.Stdio{Stdin: fp.inW, Stdout: outR, Stderr: errR}
	go fp.main(inR)
	return fp, nil
}

func (f *fakeExecutor) Stats() (agentproto.Stats, error) {
	return agentproto.Stats{MemoryUsageBytes: 1, MemoryLimitBytes: 2, CPUUsageNs: 3}, nil
}

func (f *fakeExecutor) SyncFS() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	return nil
}

func (f *fakeExecutor) WarmNetwork() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.warmNetwork++
	return nil
}

func (f *fakeExecutor) PrepareInit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepareInit++
	return nil
}

func (f *fakeExecutor) WarmRootfs() (string, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.warmRootfs++
	return "/run/warm/rootfs", func() {
		f.mu.Lock()
		f.warmRootfs--
		f.mu.Unlock()
	}, nil
}

func (f *fakeExecutor) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdown = true
	return nil
}

type fakeProcess struct {
	pid        int
	run        script
	stdio      agent.Stdio
	inW        *os.File
	outW, errW *os.File
	start      chan struct{}
	exited     chan struct{}
	status     int
	sigs       chan syscall.Signal
	startOnce  sync.Once
}

func (p *fakeProcess) main(in *os.File) {
	select {
	case <-p.start:
		p.status = p.run(in, p.outW, p.errW, p.sigs)
	case sig := <-p.sigs: // killed before start
		p.status = 128 + int(sig)
	}
	in.Close()
	// A script may hand its output files to a "child" that outlives it;
	// then the child closes them.
	if p.status >= 0 {
		p.outW.Close()
		p.errW.Close()
	} else {
		p.status = -p.status
	}
	close(p.exited)
}

func (p *fakeProcess) Pid() int                { return p.pid }
func (p *fakeProcess) Stdio() agent.Stdio      { return p.stdio }
func (p *fakeProcess) Exited() <-chan struct{} { return p.exited }
func (p *fakeProcess) ExitStatus() int         { return p.status }
func (p *fakeProcess) Start() error {
	p.startOnce.Do(func() { close(p.start) })
	return nil
}
func (p *fakeProcess) Signal(sig syscall.Signal) error    { p.sigs <- sig; return nil }
func (p *fakeProcess) SignalAll(sig syscall.Signal) error { return p.Signal(sig) }
func (p *fakeProcess) Pids() ([]int, error)               { return []int{p.pid}, nil }
func (p *fakeProcess) Resize(w, h uint32) error           { return errors.New("no tty") }

// fakeScripts are the programs of the fake executor.
func fakeScripts() map[string]script {
	return map[string]script{
		// The agent's own binary in its throwaway container (OpWarm).
		"/w": func(in io.Reader, out, _ *os.File, _ <-chan syscall.Signal) int {
			out.WriteString("kata-agent test\n")
			return 0
		},
		"echo": func(in io.Reader, out, errOut *os.File, _ <-chan syscall.Signal) int {
			out.WriteString("out\n")
			errOut.WriteString("err\n")
			return 42
		},
		"cat": func(in io.Reader, out, _ *os.File, _ <-chan syscall.Signal) int {
			io.Copy(out, in)
			return 0
		},
		"count-stdin": func(in io.Reader, out, _ *os.File, _ <-chan syscall.Signal) int {
			n, _ := io.Copy(io.Discard, in)
			out.WriteString(strings.Repeat("x", int(n)) + "done\n")
			return 7
		},
		"big": func(_ io.Reader, out, _ *os.File, _ <-chan syscall.Signal) int {
			out.Write(bigOutput())
			return 0
		},
		"sleep": func(_ io.Reader, _, _ *os.File, sigs <-chan syscall.Signal) int {
			return 128 + int(<-sigs)
		},
		// The process exits at once but a "background child" keeps its
		// stdout open and writes later: Wait must wait for that output.
		"orphan-writer": func(_ io.Reader, out, errOut *os.File, _ <-chan syscall.Signal) int {
			out.WriteString("early\n")
			go func() {
				time.Sleep(300 * time.Millisecond)
				out.WriteString("late\n")
				out.Close()
				errOut.Close()
			}()
			return -3 // exit 3, leave the files to the goroutine
		},
	}
}

func bigOutput() []byte {
	b := make([]byte, 4<<20)
	for i := range b {
		b[i] = byte(i % 253)
	}
	return b
}

// socketPair returns two connected unix stream sockets.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

type harness struct {
	exec     *fakeExecutor
	srv      *agent.Server
	client   *agentproto.Client
	poweroff chan struct{}
	log      *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, idle time.Duration) *harness {
	t.Helper()
	h := &harness{exec: &fakeExecutor{scripts: fakeScripts()}, poweroff: make(chan struct{}), log: &syncBuffer{}}
	var once sync.Once
	h.srv = agent.NewServer(agent.ServerConfig{
		Version: "test", KernelRelease: "6.1-test", Executor: h.exec, Log: agent.NewLogger(h.log, true),
		IdlePowerOff: idle, PowerOff: func() { once.Do(func() { close(h.poweroff) }) },
	})
	h.client = h.connect(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", h.log.String())
		}
	})
	return h
}

// connect serves a new session and returns its client.
func (h *harness) connect(t *testing.T) *agentproto.Client {
	t.Helper()
	hostEnd, guestEnd := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		h.srv.ServeConn(ctx, guestEnd)
		guestEnd.Close()
	}()
	c, err := agentproto.NewClient(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
	})
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createReq(id string, args ...string) agentproto.CreateContainerRequest {
	return agentproto.CreateContainerRequest{
		ID:     id,
		Spec:   &specs.Spec{Process: &specs.Process{Args: args, Cwd: "/"}, Root: &specs.Root{Path: "/run/shared/rootfs"}},
		Shares: []agentproto.Share{{Type: agentproto.Share9P, Tag: "rootfs", GuestPath: "/run/shared"}},
	}
}

func TestProtocolPingAndShares(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	info, err := h.client.Ping(ctx)
	if err != nil || info != (agentproto.AgentInfo{Version: "test", KernelRelease: "6.1-test", ProtocolVersion: agentproto.ProtocolVersion, Preloaded: true}) {
		t.Fatalf("ping: %+v, %v", info, err)
	}
	for _, id := range []string{"a", "b"} {
		if err := h.client.CreateContainer(ctx, createReq(id, "echo")); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.exec.mounts) != 1 {
		t.Errorf("the same share was mounted %d times", len(h.exec.mounts))
	}
	clash := createReq("c", "echo")
	clash.Shares[0].Tag = "other"
	if err := h.client.CreateContainer(ctx, clash); err == nil || !strings.Contains(err.Error(), "already holds share") {
		t.Errorf("clashing share: %v", err)
	}
	var remote *agentproto.RemoteError
	if err := h.client.CreateContainer(ctx, createReq("a", "echo")); !errors.As(err, &remote) || !strings.Contains(remote.Message, "already exists") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestProtocolRunWithOutput(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("c1", "echo")); err != nil {
		t.Fatal(err)
	}
	r := startAndWait(ctx, t, h.client, "c1", "", false, nil, nil)
	if r.status != 42 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("got %+v", r)
	}
	// The init's exit is reported once the guest synced.
	if !h.client.Synced() || h.exec.syncs != 1 {
		t.Errorf("after the init's exit: %d syncs, reported synced %v; want 1, true", h.exec.syncs, h.client.Synced())
	}
	// Waiting again gives the same answer; attaching after the end gives EOF.
	if st, err := h.client.Wait(ctx, "c1", ""); err != nil || st != 42 {
		t.Errorf("second wait: %d, %v", st, err)
	}
	s, err := h.client.Stdio(ctx, "c1", "", agentproto.StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(s); err != nil || len(b) != 0 {
		t.Errorf("late attach: %q, %v", b, err)
	}
	if _, err := h.client.Start(ctx, "c1", ""); err == nil {
		t.Errorf("second start succeeded")
	}
}

func TestProtocolWaitWaitsForOutput(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("c1", "orphan-writer")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := startAndWait(ctx, t, h.client, "c1", "", false, nil, nil)
	if r.status != 3 || r.stdout != "early\nlate\n" {
		t.Errorf("got %+v", r)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("wait answered before the output was complete")
	}
}

func TestProtocolLargeOutputAndStdin(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("big", "big")); err != nil {
		t.Fatal(err)
	}
	r := startAndWait(ctx, t, h.client, "big", "", false, nil, nil)
	if sha256.Sum256([]byte(r.stdout)) != sha256.Sum256(bigOutput()) {
		t.Errorf("4 MiB output: got %d bytes, content differs", len(r.stdout))
	}
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := h.client.CreateContainer(ctx, createReq("cat", "cat")); err != nil {
		t.Fatal(err)
	}
	r = startAndWait(ctx, t, h.client, "cat", "", false, in, nil)
	if r.status != 0 || r.stdout != string(in) {
		t.Errorf("cat: status %d, %d bytes back of %d", r.status, len(r.stdout), len(in))
	}
}

func TestProtocolStdinEOFCases(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	// Not attached: the process reads EOF at once.
	if err := h.client.CreateContainer(ctx, createReq("none", "count-stdin")); err != nil {
		t.Fatal(err)
	}
	if r := startAndWait(ctx, t, h.client, "none", "", false, nil, nil); r.status != 7 || r.stdout != "done\n" {
		t.Errorf("no stdin: %+v", r)
	}
	// Attached and never closed by the host: CloseStdin ends it.
	if err := h.client.CreateContainer(ctx, createReq("open", "count-stdin")); err != nil {
		t.Fatal(err)
	}
	in, err := h.client.Stdio(ctx, "open", "", agentproto.StreamStdin)
	if err != nil {
		t.Fatal(err)
	}
	r := startAndWait(ctx, t, h.client, "open", "", false, nil, func() {
		in.Write([]byte("abc"))
		time.Sleep(50 * time.Millisecond)
		if err := h.client.CloseStdin(ctx, "open", ""); err != nil {
			t.Errorf("close stdin: %v", err)
		}
	})
	if r.status != 7 || r.stdout != "xxxdone\n" {
		t.Errorf("CloseStdin: %+v", r)
	}
	in.Close()
}

func TestProtocolUnattachedAndAbandonedOutput(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	// Nothing attached: 4 MiB are discarded and the process is not blocked.
	if err := h.client.CreateContainer(ctx, createReq("quiet", "big")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Start(ctx, "quiet", ""); err != nil {
		t.Fatal(err)
	}
	if st, err := h.client.Wait(ctx, "quiet", ""); err != nil || st != 0 {
		t.Errorf("unattached: %d, %v", st, err)
	}
	// Attached, then closed by the host without reading: same.
	if err := h.client.CreateContainer(ctx, createReq("abandoned", "big")); err != nil {
		t.Fatal(err)
	}
	out, err := h.client.Stdio(ctx, "abandoned", "", agentproto.StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	if _, err := h.client.Start(ctx, "abandoned", ""); err != nil {
		t.Fatal(err)
	}
	if st, err := h.client.Wait(ctx, "abandoned", ""); err != nil || st != 0 {
		t.Errorf("abandoned: %d, %v", st, err)
	}
}

func TestProtocolSignalsExecAndErrors(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	c := h.client
	if err := c.CreateContainer(ctx, createReq("s", "sleep")); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "s", "e1", &specs.Process{Args: []string{"echo"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "s", "e1", &specs.Process{Args: []string{"echo"}}); err == nil {
		t.Errorf("duplicate exec id accepted")
	}
	if err := c.Exec(ctx, "s", "../x", &specs.Process{Args: []string{"echo"}}); err == nil {
		t.Errorf("bad exec id accepted")
	}
	if r := startAndWait(ctx, t, c, "s", "e1", false, nil, nil); r.status != 42 || r.stdout != "out\n" {
		t.Errorf("exec: %+v", r)
	}
	if c.Synced() || h.exec.syncs != 0 {
		t.Errorf("an exec's exit synced the guest (%d syncs) or was reported as synced (%v)", h.exec.syncs, c.Synced())
	}
	if pids, err := c.Pids(ctx, "s"); err != nil || len(pids) != 1 {
		t.Errorf("pids: %v, %v", pids, err)
	}
	if st, err := c.Stats(ctx, "s"); err != nil || st.CPUUsageNs != 3 || st.Pids != 1 {
		t.Errorf("stats: %+v, %v", st, err)
	}
	if err := c.ResizePty(ctx, "s", "", 80, 24); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("resize without a tty: %v", err)
	}
	if _, err := c.Stdio(ctx, "s", "", "stdweird"); err == nil {
		t.Errorf("unknown stream accepted")
	}
	if err := c.CreateContainer(ctx, createReq("d", "sleep")); err != nil {
		t.Fatal(err)
	}
	out, err := c.Stdio(ctx, "d", "", agentproto.StreamStderr)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := c.Stdio(ctx, "d", "", agentproto.StreamStderr); err == nil || !strings.Contains(err.Error(), "already attached") {
		t.Errorf("second stderr attach: %v", err)
	}
	r := startAndWait(ctx, t, c, "s", "", false, nil, func() {
		if err := c.Signal(ctx, "s", "", syscall.SIGTERM, false); err != nil {
			t.Errorf("signal: %v", err)
		}
	})
	if r.status != 143 {
		t.Errorf("SIGTERM: status %d", r.status)
	}
	if err := c.Signal(ctx, "s", "", syscall.SIGKILL, true); err != nil {
		t.Errorf("signal after exit: %v", err)
	}
	if err := c.Exec(ctx, "s", "e2", &specs.Process{Args: []string{"echo"}}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("exec into an exited container: %v", err)
	}
	if err := c.Signal(ctx, "s", "", syscall.Signal(99), false); err == nil {
		t.Errorf("signal 99 accepted")
	}
	for name, err := range map[string]error{
		"wait":  func() error { _, err := c.Wait(ctx, "nope", ""); return err }(),
		"start": func() error { _, err := c.Start(ctx, "s", "nope"); return err }(),
		"pids":  func() error { _, err := c.Pids(ctx, "nope"); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("%s on unknown: %v", name, err)
		}
	}
	bad := createReq("bad", "echo")
	bad.Spec.Root.Path = "relative"
	if err := c.CreateContainer(ctx, bad); err == nil {
		t.Errorf("relative root accepted")
	}
	if err := c.RemoveContainer(ctx, "s"); err != nil {
		t.Errorf("remove: %v", err)
	}
	if err := c.CreateContainer(ctx, createReq("s", "echo")); err != nil {
		t.Errorf("reuse of a removed id: %v", err)
	}
}

func TestProtocolKillBeforeStart(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("k", "sleep")); err != nil {
		t.Fatal(err)
	}
	out, err := h.client.Stdio(ctx, "k", "", agentproto.StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.client.Signal(ctx, "k", "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if st, err := h.client.Wait(ctx, "k", ""); err != nil || st != 137 {
		t.Errorf("wait: %d, %v", st, err)
	}
	if b, err := io.ReadAll(out); err != nil || len(b) != 0 {
		t.Errorf("stdout: %q, %v", b, err)
	}
}

func TestProtocolWaitCancel(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("w", "sleep")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Start(ctx, "w", ""); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := h.client.Wait(short, "w", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait with a short deadline: %v", err)
	}
	if _, err := h.client.Ping(ctx); err != nil {
		t.Errorf("client unusable after a cancelled call: %v", err)
	}
	// The agent stops waiting too.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.log.String(), "request wait w/ failed: context canceled") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent kept waiting for a host that gave up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProtocolShutdown(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("x", "sleep")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Start(ctx, "x", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-h.poweroff:
	case <-time.After(5 * time.Second):
		t.Fatal("no power-off after shutdown")
	}
	if !h.exec.shutdown {
		t.Errorf("executor not shut down")
	}
	if st, err := h.client.Wait(ctx, "x", ""); err != nil || st != 137 {
		t.Errorf("the container was not killed: %d, %v", st, err)
	}
	if err := h.client.CreateContainer(ctx, createReq("y", "echo")); err == nil {
		t.Errorf("create after shutdown accepted")
	}
}

func TestShutdownToleratesVanishingVM(t *testing.T) {
	hostEnd, guestEnd := socketPair(t)
	srv := agent.NewServer(agent.ServerConfig{
		Executor: &fakeExecutor{},
		// The VM is gone before the answer could be read.
		PowerOff: func() { guestEnd.Close() },
	})
	go srv.ServeConn(context.Background(), &closeFirst{Conn: guestEnd})
	c, err := agentproto.NewClient(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Shutdown(testCtx(t)); err != nil {
		t.Errorf("shutdown with a vanishing VM: %v", err)
	}
}

// closeFirst drops the agent's answer to shutdown, as a VM powering off
// before its last bytes leave would.
type closeFirst struct{ net.Conn }

func (c *closeFirst) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`{}`)) {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func TestIdlePowerOff(t *testing.T) {
	h := newHarness(t, 200*time.Millisecond)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("i", "echo")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Start(ctx, "i", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Wait(ctx, "i", ""); err != nil {
		t.Fatal(err)
	}
	// Serve's watchdog runs only under Serve: drive it with a transport
	// that hands out nothing.
	go h.srv.Serve(ctx, blockingTransport{})
	select {
	case <-h.poweroff:
		t.Fatal("powered off while a host is connected")
	case <-time.After(600 * time.Millisecond):
	}
	h.client.Close()
	select {
	case <-h.poweroff:
	case <-time.After(3 * time.Second):
		t.Fatal("no power-off after the host left")
	}
}

type blockingTransport struct{}

func (blockingTransport) Accept(ctx context.Context) (io.ReadWriteCloser, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestReconnectKeepsState(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	if err := h.client.CreateContainer(ctx, createReq("r", "echo")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Start(ctx, "r", ""); err != nil {
		t.Fatal(err)
	}
	h.client.Close()
	c2 := h.connect(t)
	if st, err := c2.Wait(ctx, "r", ""); err != nil || st != 42 {
		t.Errorf("wait over a new session: %d, %v", st, err)
	}
}

// portTransport hands out the same guest end again and again, like a
// virtio-serial port that stays open while hosts come and go.
type portTransport struct{ conn net.Conn }

func (p portTransport) Accept(ctx context.Context) (io.ReadWriteCloser, error) {
	return noClose{p.conn}, nil
}

type noClose struct{ net.Conn }

func (noClose) Close() error { return nil }

func TestServeNewHostWithoutDisconnect(t *testing.T) {
	// The agent may not notice that a host left before the next one says
	// hello (virtio-serial drops the disconnect when the reconnect is fast):
	// the hello alone must end the old session and start a new one.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostFile := os.NewFile(uintptr(fds[0]), "host")
	defer hostFile.Close()
	guestFile := os.NewFile(uintptr(fds[1]), "guest")
	guest, err := net.FileConn(guestFile)
	guestFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	log := &syncBuffer{}
	srv := agent.NewServer(agent.ServerConfig{Executor: &fakeExecutor{scripts: fakeScripts()}, Log: agent.NewLogger(log, true)})
	ctx := testCtx(t)
	go srv.Serve(ctx, portTransport{guest})
	newHost := func() *agentproto.Client {
		conn, err := net.FileConn(hostFile) // a new descriptor for the same socket
		if err != nil {
			t.Fatal(err)
		}
		c, err := agentproto.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := newHost()
	if err := c1.CreateContainer(ctx, createReq("old", "sleep")); err != nil {
		t.Fatal(err)
	}
	// A stream of the old session stays open on the agent's side.
	if _, err := c1.Stdio(ctx, "old", "", agentproto.StreamStdout); err != nil {
		t.Fatal(err)
	}
	c1.Close() // closes only c1's descriptor: the agent sees no EOF
	c2 := newHost()
	defer c2.Close()
	if _, err := c2.Ping(ctx); err != nil {
		t.Fatalf("ping from the new host: %v\n%s", err, log.String())
	}
	if err := c2.Signal(ctx, "old", "", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if st, err := c2.Wait(ctx, "old", ""); err != nil || st != 137 {
		t.Errorf("wait from the new host: %d, %v", st, err)
	}
	if !strings.Contains(log.String(), "new host waiting: true") {
		t.Errorf("the old session did not end on the new hello:\n%s", log.String())
	}
}

// TestWarm: a VM that ran no container mounts the shares given and runs the agent's throwaway
// container, which leaves no container, no rootfs and no count of a container that ran (the idle power-off still waits for
// a host's container); once a host's container ran, warming is refused, and so is the throwaway
// container's ID for a host's container.
func TestWarm(t *testing.T) {
	h := newHarness(t, 100*time.Millisecond)
	ctx := testCtx(t)
	share := createReq("x", "echo").Shares[0]
	like := &specs.Spec{
		Process: &specs.Process{Args: []string{"/bin/sh"}, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}},
		Linux:   &specs.Linux{MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}},
		Mounts:  []specs.Mount{{Destination: "/x", Type: "bind", Source: "/"}},
	}
	filter := &agentproto.Seccomp{Program: make([]byte, 8)}
	if err := h.client.Warm(ctx, like, filter, share); err != nil {
		t.Fatal(err)
	}
	if len(h.exec.inits) != 1 {
		t.Fatalf("warming created %d containers, want 1", len(h.exec.inits))
	}
	if w := h.exec.inits[0]; w.Process.Args[0] != "/w" || w.Process.Capabilities == nil ||
		len(w.Linux.MaskedPaths) != 1 || len(w.Linux.ReadonlyPaths) != 1 || slices.ContainsFunc(w.Mounts, func(m specs.Mount) bool { return m.Destination == "/x" }) {
		t.Errorf("the throwaway container is not confined like the spec given, or took more of it: %+v %+v", w.Process, w.Linux)
	}
	if got := h.exec.seccomps[0]; got == nil || len(got.Program) != 8 {
		t.Errorf("the throwaway container's compiled filter: %+v, want the one given", got)
	}
	if len(h.exec.mounts) != 1 {
		t.Errorf("warming with a share mounted %d shares, want 1", len(h.exec.mounts))
	}
	if h.exec.warmRootfs != 0 {
		t.Errorf("%d throwaway rootfs left", h.exec.warmRootfs)
	}
	if h.exec.warmNetwork != 1 {
		t.Errorf("the network configuration was warmed %d times, want 1", h.exec.warmNetwork)
	}
	if h.exec.prepareInit != 1 {
		t.Errorf("warming started the next container's init ahead %d times, want 1", h.exec.prepareInit)
	}
	if _, err := h.client.Wait(ctx, agentproto.WarmContainerID, ""); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("the throwaway container is still there: %v", err)
	}
	if err := h.client.CreateContainer(ctx, createReq(agentproto.WarmContainerID, "echo")); err == nil || !strings.Contains(err.Error(), "the agent's own") {
		t.Errorf("a host's container took the throwaway container's ID: %v", err)
	}
	h.client.Close()
	go h.srv.Serve(ctx, blockingTransport{})
	select {
	case <-h.poweroff:
		t.Fatal("a warmed VM that ran no host container powered off when the host left")
	case <-time.After(500 * time.Millisecond):
	}
	c := h.connect(t)
	if err := c.CreateContainer(ctx, createReq("c1", "echo")); err != nil {
		t.Fatal(err)
	}
	if len(h.exec.mounts) != 1 {
		t.Errorf("the container's create mounted the share warming mounted again (%d mounts)", len(h.exec.mounts))
	}
	if err := c.Warm(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "run containers already") {
		t.Errorf("warming after a container: %v", err)
	}
}

// TestCreateWithCompiledSeccomp: the host's compiled filter reaches the executor with the spec;
// a request with both a compiled filter and a profile in the spec is refused before anything is
// mounted.
func TestCreateWithCompiledSeccomp(t *testing.T) {
	h := newHarness(t, 0)
	ctx := testCtx(t)
	req := createReq("a", "echo")
	req.Seccomp = &agentproto.Seccomp{Program: make([]byte, 16), Flags: 2}
	if err := h.client.CreateContainer(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := h.exec.seccomps[0]; got == nil || len(got.Program) != 16 || got.Flags != 2 {
		t.Errorf("the executor received the filter %+v, want the host's", got)
	}
	both := createReq("b", "echo")
	both.Shares = []agentproto.Share{{Type: agentproto.Share9P, Tag: "other", GuestPath: "/run/other"}}
	both.Seccomp = req.Seccomp
	both.Spec.Linux = &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}}
	err := h.client.CreateContainer(ctx, both)
	if err == nil || !strings.Contains(err.Error(), "one of them") {
		t.Fatalf("create with a filter and a profile: %v, want a refusal", err)
	}
	if len(h.exec.inits) != 1 || len(h.exec.mounts) != 1 {
		t.Errorf("the refused create made %d containers and %d mounts, want 1 and 1", len(h.exec.inits), len(h.exec.mounts))
	}
}
