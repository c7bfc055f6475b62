package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	Version       string
	KernelRelease string
	Executor      Executor
	Log           *Logger
	// IdlePowerOff powers the VM off when containers ran, all their inits
	// have exited, and no host has been connected for this long: no VM is
	// left behind by a host that went away. Zero disables it.
	IdlePowerOff time.Duration
	// PowerOff is called after a Shutdown request has been answered and on
	// idle. Nil does nothing (tests).
	PowerOff func()
	// Restored makes a VM restored from a template a machine of its own (restore.go).
	// Nil refuses the request (tests).
	Restored func(agentproto.Restored) error
	// Modules loads kernel modules when a request first needs them. Nil: all are loaded at boot.
	Modules *ModuleGroups
}

// Server answers the host's requests. One Server outlives any number of
// host sessions: containers keep running while no host is connected.
type Server struct {
	cfg ServerConfig

	// opMu serializes operations that change the set of containers and
	// processes (create, exec, remove, shutdown).
	opMu sync.Mutex

	mu         sync.Mutex
	containers map[string]*container
	shares     map[string]agentproto.Share // by guest path
	sessions   int
	lastEvent  time.Time
	ranAny     bool
	shutdown   bool

	net guestNetwork // network.go, dns.go
}

type container struct {
	id    string
	init  *proc
	execs map[string]*proc
}

// NewServer returns a server; call Serve or ServeConn.
func NewServer(cfg ServerConfig) *Server {
	return &Server{
		cfg:        cfg,
		containers: make(map[string]*container),
		shares:     make(map[string]agentproto.Share),
		lastEvent:  time.Now(),
	}
}

// Serve accepts host connections from t one after another until ctx ends.
func (s *Server) Serve(ctx context.Context, t Transport) error {
	go s.watchIdle(ctx)
	var pending []byte // the start of a hello that ended the previous session
	for {
		conn, err := t.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.cfg.Log.Errorf("accept host connection: %v", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		pending, err = s.serveConn(ctx, conn, pending)
		conn.Close()
		s.cfg.Log.Debugf("host session ended (new host waiting: %v): %v", pending != nil, err)
	}
}

// ServeConn serves one host session over conn until it ends.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	_, err := s.serveConn(ctx, conn, nil)
	return err
}

// serveConn runs the handshake and one yamux session. pending are bytes the
// previous session read but left to this one: the start of the hello that
// ended it. When a new host's hello ends this session too, serveConn returns
// the bytes from that hello on, which are not nil.
func (s *Server) serveConn(ctx context.Context, conn io.ReadWriteCloser, pending []byte) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// The whole hello is read even when a session ended on its first bytes:
	// the rest may still be on its way, and must not be taken for yamux frames.
	if err := agentproto.AwaitHello(io.MultiReader(bytes.NewReader(pending), conn)); err != nil {
		return nil, fmt.Errorf("wait for the host's hello: %w", err)
	}
	if err := agentproto.SendReady(conn); err != nil {
		return nil, err
	}
	watch := agentproto.NewHelloWatcher(conn)
	sess, err := agentproto.NewServerSession(watchedConn{Reader: watch, ReadWriteCloser: conn}, logWriter{s.cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("start agent session: %w", err)
	}
	defer sess.Close()
	s.cfg.Log.Debugf("host session started")
	s.sessionChange(+1)
	defer s.sessionChange(-1)
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return watch.Rest(), err
		}
		go s.handleStream(ctx, st)
	}
}

// watchedConn reads through a HelloWatcher.
type watchedConn struct {
	io.Reader
	io.ReadWriteCloser
}

func (w watchedConn) Read(p []byte) (int, error) { return w.Reader.Read(p) }

func (s *Server) sessionChange(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions += delta
	s.lastEvent = time.Now()
}

func (s *Server) touch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastEvent = time.Now()
}

func (s *Server) handleStream(ctx context.Context, st net.Conn) {
	br := bufio.NewReader(st)
	var req agentproto.Request
	if err := agentproto.ReadMessage(br, &req); err != nil {
		s.cfg.Log.Errorf("read request: %v", err)
		st.Close()
		return
	}
	s.touch()
	s.cfg.Log.Debugf("request %s container=%q exec=%q", req.Op, req.Container, req.Exec)
	if req.Op == agentproto.OpDNS {
		s.serveDNS(st, br, req)
		return
	}
	if req.Op == agentproto.OpStdio {
		if err := s.attach(st, br, req); err != nil {
			s.reply(st, req, agentproto.Response{Error: err.Error()})
			st.Close()
		}
		return
	}
	// The host sends nothing after a request: EOF means it gave up (its
	// context ended), and a long request such as wait should stop too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, br)
		cancel()
	}()
	resp, after := s.dispatch(ctx, req)
	s.reply(st, req, resp)
	st.Close()
	if after != nil {
		after()
	}
}

func (s *Server) reply(w io.Writer, req agentproto.Request, resp agentproto.Response) {
	if resp.Error != "" {
		s.cfg.Log.Debugf("request %s %s/%s failed: %s", req.Op, req.Container, req.Exec, resp.Error)
	}
	if err := agentproto.WriteMessage(w, resp); err != nil {
		s.cfg.Log.Errorf("answer %s: %v", req.Op, err)
	}
}

// dispatch runs one request; after, if set, runs once the answer is sent.
func (s *Server) dispatch(ctx context.Context, req agentproto.Request) (resp agentproto.Response, after func()) {
	var err error
	switch req.Op {
	case agentproto.OpPing:
		resp.Info = &agentproto.AgentInfo{Version: s.cfg.Version, KernelRelease: s.cfg.KernelRelease, ProtocolVersion: agentproto.ProtocolVersion,
			Preloaded: s.cfg.Modules.Preloaded()}
	case agentproto.OpCreateContainer:
		if req.Container == agentproto.WarmContainerID {
			err = fmt.Errorf("container ID %q is the agent's own: use another", req.Container)
			break
		}
		err = s.create(ctx, req)
	case agentproto.OpStart:
		resp.Pid, err = s.start(req)
	case agentproto.OpExec:
		err = s.exec(ctx, req)
	case agentproto.OpWait:
		resp.ExitStatus, resp.Synced, err = s.wait(ctx, req)
	case agentproto.OpSignal:
		err = s.signal(req)
	case agentproto.OpCloseStdin:
		err = s.closeStdin(req)
	case agentproto.OpResizePty:
		err = s.resize(req)
	case agentproto.OpPids:
		resp.Pids, err = s.pids(req)
	case agentproto.OpStats:
		resp.Stats, err = s.stats(req)
	case agentproto.OpUpdateContainer:
		resp.Notes, err = s.update(ctx, req)
	case agentproto.OpNetwork:
		err = s.configureNetwork(ctx, req)
	case agentproto.OpRemoveContainer:
		err = s.remove(req)
	case agentproto.OpRestored:
		err = s.restored(req)
	case agentproto.OpWarm:
		err = s.warm(ctx, req.Shares, req.Spec, req.Seccomp)
	case agentproto.OpShutdown:
		err = s.shutdownAll(ctx)
		if err == nil && s.cfg.PowerOff != nil {
			after = s.cfg.PowerOff
		}
	default:
		err = fmt.Errorf("unknown operation %q: the host is newer than this agent; rebuild the guest image", req.Op)
	}
	if err != nil {
		resp = agentproto.Response{Error: err.Error()}
	}
	return resp, after
}

func (s *Server) create(ctx context.Context, req agentproto.Request) error {
	if err := validateCreate(req); err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	_, exists := s.containers[req.Container]
	down := s.shutdown
	s.mu.Unlock()
	if exists {
		return fmt.Errorf("container %q already exists", req.Container)
	}
	if down {
		return errors.New("the agent is shutting down")
	}
	for _, sh := range req.Shares {
		if err := s.mountShare(ctx, sh); err != nil {
			return err
		}
	}
	if len(req.Devices) > 0 {
		s.cfg.Modules.Need(agentproto.ModuleGroupBlock)
	}
	if err := mapGuestDevices(ctx, req.Spec, req.Devices); err != nil {
		return err
	}
	p, err := s.cfg.Executor.CreateInit(ctx, req.Container, req.Spec, req.Seccomp)
	if err != nil {
		return fmt.Errorf("create container %q: %w", req.Container, err)
	}
	// The init's exit is reported once the guest wrote its file systems out: the container's
	// processes are all gone by then (they die with its pid namespace before its init can be
	// reaped), and the host need not ask for it before it kills the VM (Response.Synced).
	c := &container{id: req.Container, init: newProc(p, s.cfg.Executor.SyncFS), execs: make(map[string]*proc)}
	s.mu.Lock()
	s.containers[c.id] = c
	s.ranAny = true
	s.mu.Unlock()
	go func() {
		<-c.init.done
		s.cfg.Log.Debugf("container %s: init exited with status %d", c.id, c.init.status)
		s.touch()
	}()
	return nil
}

// validateCreate checks a create request before anything is mounted.
func validateCreate(req agentproto.Request) error {
	if err := agentproto.ValidID("container", req.Container); err != nil {
		return err
	}
	sp := req.Spec
	if sp == nil || sp.Process == nil || sp.Root == nil {
		return errors.New("the spec needs process and root")
	}
	if err := agentproto.ValidGuestPath(sp.Root.Path); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if len(sp.Process.Args) == 0 {
		return errors.New("the spec's process has no args")
	}
	if req.Seccomp != nil && sp.Linux != nil && sp.Linux.Seccomp != nil {
		return errors.New("the request carries a compiled seccomp filter and the spec a seccomp profile: send one of them")
	}
	for _, sh := range req.Shares {
		if err := sh.Validate(); err != nil {
			return err
		}
	}
	for _, d := range req.Devices {
		if err := d.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// mountShare mounts sh unless the same share is already at its path.
func (s *Server) mountShare(ctx context.Context, sh agentproto.Share) error {
	s.mu.Lock()
	have, ok := s.shares[sh.GuestPath]
	s.mu.Unlock()
	if ok {
		if have == sh {
			return nil
		}
		return fmt.Errorf("guest path %s already holds share %q (%s), cannot mount %q there", sh.GuestPath, have.Tag, have.Type, sh.Tag)
	}
	for _, group := range agentproto.ShareModuleGroups(sh.Type) {
		s.cfg.Modules.Need(group)
	}
	if err := s.cfg.Executor.MountShare(ctx, sh); err != nil {
		return err
	}
	s.mu.Lock()
	s.shares[sh.GuestPath] = sh
	s.mu.Unlock()
	return nil
}

// lookup finds a container and one of its processes ("" = init).
func (s *Server) lookup(containerID, execID string) (*container, *proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[containerID]
	if !ok {
		return nil, nil, fmt.Errorf("container %q not found", containerID)
	}
	if execID == "" {
		return c, c.init, nil
	}
	pr, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %q not found in container %q", execID, containerID)
	}
	return c, pr, nil
}

func (s *Server) start(req agentproto.Request) (int, error) {
	_, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return 0, err
	}
	return pr.start()
}

func (s *Server) exec(ctx context.Context, req agentproto.Request) error {
	if err := agentproto.ValidID("exec", req.Exec); err != nil {
		return err
	}
	if req.Process == nil || len(req.Process.Args) == 0 {
		return errors.New("exec needs a process with args")
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	c, _, err := s.lookup(req.Container, "")
	if err != nil {
		return err
	}
	if c.init.exited() {
		return fmt.Errorf("container %q is not running", req.Container)
	}
	s.mu.Lock()
	_, exists := c.execs[req.Exec]
	s.mu.Unlock()
	if exists {
		return fmt.Errorf("exec %q already exists in container %q", req.Exec, req.Container)
	}
	p, err := s.cfg.Executor.CreateExec(ctx, c.init.p, req.Process)
	if err != nil {
		return fmt.Errorf("exec %q in container %q: %w", req.Exec, req.Container, err)
	}
	s.mu.Lock()
	c.execs[req.Exec] = newProc(p, nil)
	s.mu.Unlock()
	return nil
}

// wait returns a process's exit status, and for a container's init whether the guest synced after
// it exited.
func (s *Server) wait(ctx context.Context, req agentproto.Request) (int, bool, error) {
	_, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return 0, false, err
	}
	status, err := pr.wait(ctx)
	return status, err == nil && pr.synced, err
}

// signal signals a process. Signalling a process that already exited is not
// an error: kill is idempotent for the host.
func (s *Server) signal(req agentproto.Request) error {
	if req.Signal <= 0 || req.Signal > 64 {
		return fmt.Errorf("signal %d is out of range", req.Signal)
	}
	sig := syscall.Signal(req.Signal)
	c, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	if req.All {
		pr = c.init
	}
	if pr.exited() {
		return nil
	}
	if req.All {
		return pr.p.SignalAll(sig)
	}
	return pr.p.Signal(sig)
}

func (s *Server) closeStdin(req agentproto.Request) error {
	_, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	pr.stdin.close()
	return nil
}

func (s *Server) resize(req agentproto.Request) error {
	_, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	if !pr.term {
		return errors.New("the process has no terminal")
	}
	return pr.p.Resize(req.Width, req.Height)
}

func (s *Server) pids(req agentproto.Request) ([]int, error) {
	c, _, err := s.lookup(req.Container, "")
	if err != nil {
		return nil, err
	}
	if c.init.exited() {
		return []int{}, nil
	}
	return c.init.p.Pids()
}

func (s *Server) stats(req agentproto.Request) (*agentproto.Stats, error) {
	st, err := s.cfg.Executor.Stats()
	if err != nil {
		return nil, err
	}
	if req.Container != "" {
		pids, err := s.pids(req)
		if err != nil {
			return nil, err
		}
		st.Pids = len(pids)
	}
	return &st, nil
}

// killWait is how long remove and shutdown wait for killed processes.
const killWait = 10 * time.Second

func (s *Server) remove(req agentproto.Request) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	c, _, err := s.lookup(req.Container, "")
	if err != nil {
		return err
	}
	if err := s.kill(c); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	return nil
}

// kill SIGKILLs a container's processes and waits until they have exited
// (not for their output: a host that stopped reading must not stall this).
func (s *Server) kill(c *container) error {
	s.mu.Lock()
	procs := []*proc{c.init}
	for _, pr := range c.execs {
		procs = append(procs, pr)
	}
	s.mu.Unlock()
	for _, pr := range procs {
		if !pr.exited() {
			pr.p.Signal(syscall.SIGKILL)
		}
	}
	deadline := time.After(killWait)
	for _, pr := range procs {
		select {
		case <-pr.p.Exited():
		case <-deadline:
			return fmt.Errorf("container %q: processes did not exit %v after SIGKILL", c.id, killWait)
		}
	}
	return nil
}

func (s *Server) shutdownAll(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.shutdown = true
	var all []*container
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		if err := s.kill(c); err != nil {
			s.cfg.Log.Errorf("shutdown: %v", err)
		}
	}
	return s.cfg.Executor.Shutdown(ctx)
}

// attach connects a stdio stream to a process. It answers on st itself when
// it succeeds; an error return means nothing was written yet.
func (s *Server) attach(st net.Conn, br *bufio.Reader, req agentproto.Request) error {
	_, pr, err := s.lookup(req.Container, req.Exec)
	if err != nil {
		return err
	}
	announce := func() error { return agentproto.WriteMessage(st, agentproto.Response{}) }
	switch req.Stream {
	case agentproto.StreamStdin:
		return pr.stdin.attach(br, st, announce)
	case agentproto.StreamStdout, agentproto.StreamStderr:
		out := pr.stdout
		if req.Stream == agentproto.StreamStderr {
			if pr.stderr == nil {
				return errors.New("the process has a terminal: stderr is part of the stdout stream")
			}
			out = pr.stderr
		}
		if err := out.attach(st, announce); err != nil {
			return err
		}
		// The host writes nothing on an output stream: its EOF means it
		// closed the stream, so stop sending there.
		go func() {
			io.Copy(io.Discard, br)
			out.detach(st)
		}()
		return nil
	default:
		return fmt.Errorf("unknown stdio stream %q: use stdin, stdout or stderr", req.Stream)
	}
}

// watchIdle powers the VM off when it has been left alone; see
// ServerConfig.IdlePowerOff.
func (s *Server) watchIdle(ctx context.Context) {
	if s.cfg.IdlePowerOff <= 0 || s.cfg.PowerOff == nil {
		return
	}
	tick := min(time.Second, s.cfg.IdlePowerOff/4)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if s.idle(now) {
				s.cfg.Log.Errorf("no host for %v after the containers exited: powering off", s.cfg.IdlePowerOff)
				s.cfg.PowerOff()
				return
			}
		}
	}
}

func (s *Server) idle(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ranAny || s.sessions > 0 || now.Sub(s.lastEvent) < s.cfg.IdlePowerOff {
		return false
	}
	for _, c := range s.containers {
		select {
		case <-c.init.done:
		default:
			return false
		}
	}
	return true
}
