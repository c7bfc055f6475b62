package agentproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RemoteError is an error the agent reported for a request.
type RemoteError struct {
	Op      string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("guest agent %s: %s", e.Op, e.Message)
}

// Client talks to one guest agent. It is safe for concurrent use: every call
// runs on its own stream.
type Client struct {
	conn  net.Conn
	ready chan struct{} // closed when the handshake ended; then session or err is set
	done  chan struct{} // closed when the session ended
	// set before ready is closed
	session *yamux.Session
	guard   *guardedConn
	err     error

	// opening holds a token for every stream the guest has not acknowledged yet; see exchange.
	opening chan struct{}
	logf    func(format string, args ...any)

	healthMu sync.Mutex
	silent   error // why the guest is considered unresponsive; nil while it answers

	synced atomic.Bool // a container's init exited and the guest synced after it (Synced)
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithLogf sends the client's one-line notices (a guest that stops answering, answers again, or
// breaks the protocol) to logf.
func WithLogf(logf func(format string, args ...any)) ClientOption {
	return func(c *Client) {
		if logf != nil {
			c.logf = logf
		}
	}
}

// maxOpening bounds the streams the host has opened and the guest not yet acknowledged. yamux
// blocks OpenStream without any deadline once its own limit (AcceptBacklog, 256) is reached, so the
// client keeps well below it and waits for a token within the caller's context instead.
const maxOpening = 64

// acknowledgeWithin is how long a healthy guest may take to acknowledge a stream.
var acknowledgeWithin = 10 * time.Second

// maxResponseSize bounds one answer line from the guest: answers are a few hundred bytes (a pid
// list a few kilobytes).
const maxResponseSize = 256 << 10

// Default deadlines of the agent's operations, applied when the caller's context ends later (or
// never). They are generous: TCG guests on a loaded host are slow. Wait has none: a process may
// run for ever.
var opTimeouts = map[string]time.Duration{
	OpCreateContainer: 2 * time.Minute,
	OpStdio:           30 * time.Second,
	OpStart:           time.Minute,
	OpExec:            time.Minute,
	OpSignal:          10 * time.Second,
	OpCloseStdin:      10 * time.Second,
	OpResizePty:       10 * time.Second,
	OpPids:            10 * time.Second,
	OpStats:           10 * time.Second,
	OpUpdateContainer: 30 * time.Second,
	OpRemoveContainer: 30 * time.Second,
	OpShutdown:        10 * time.Second,
	OpNetwork:         time.Minute,
	OpDNS:             30 * time.Second,
	OpPing:            30 * time.Second,
	OpRestored:        10 * time.Second,
}

// OpTimeout is the default deadline of op (0: none).
func OpTimeout(op string) time.Duration { return opTimeouts[op] }

// NewClient starts the host's end of a session over conn, usually the unix
// socket of QEMU's virtio-serial chardev. It returns at once: the handshake
// (see HelloMagic) completes in the background when the agent runs, and
// every call waits for it within its context. QEMU holds the host's bytes
// until the guest opens its port, so a client may be made before the VM
// has booted.
func NewClient(conn net.Conn, opts ...ClientOption) (*Client, error) {
	if conn == nil {
		return nil, errors.New("agent client: nil connection")
	}
	c := &Client{
		conn: conn, ready: make(chan struct{}), done: make(chan struct{}),
		opening: make(chan struct{}, maxOpening), logf: func(string, ...any) {},
	}
	for _, o := range opts {
		o(c)
	}
	go c.handshake()
	return c, nil
}

func (c *Client) handshake() {
	defer close(c.ready)
	if _, err := io.WriteString(c.conn, HelloMagic); err != nil {
		c.fail(fmt.Errorf("guest agent handshake: send hello: %w", err))
		return
	}
	// Discard what an earlier session left in the channel.
	br := bufio.NewReaderSize(c.conn, 64<<10)
	if err := awaitReady(br); err != nil {
		c.fail(fmt.Errorf("guest agent handshake: %w", err))
		return
	}
	g := newGuardedConn(br, c.conn)
	s, err := yamux.Client(g, sessionConfig(nil))
	if err != nil {
		g.Close()
		c.fail(fmt.Errorf("start agent session: %w", err))
		return
	}
	c.session, c.guard = s, g
	go func() {
		<-s.CloseChan()
		g.Close()
		if g.err != nil {
			c.logf("guest agent channel closed: %v", g.err)
		}
		close(c.done)
	}()
}

// RefusedStreams counts the streams the guest tried to open; each was reset.
func (c *Client) RefusedStreams() uint64 {
	select {
	case <-c.ready:
		if c.guard != nil {
			return c.guard.Refused()
		}
	default:
	}
	return 0
}

// Unresponsive returns why the guest is considered unresponsive (a call ran into its deadline
// without an answer, or streams were not acknowledged), or nil while it answers.
func (c *Client) Unresponsive() error {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	return c.silent
}

// answered records that the guest answered; it logs when an unresponsive guest came back.
func (c *Client) answered() {
	c.healthMu.Lock()
	was := c.silent
	c.silent = nil
	c.healthMu.Unlock()
	if was != nil {
		c.logf("guest agent answers again")
	}
}

// unanswered records a call that ran into its deadline; it logs once until the guest answers.
func (c *Client) unanswered(op string, err error) {
	c.healthMu.Lock()
	first := c.silent == nil
	if first {
		c.silent = fmt.Errorf("guest agent did not answer %s: %w", op, err)
	}
	c.healthMu.Unlock()
	if first {
		c.logf("guest agent marked unresponsive: it did not answer %s in time (%v)", op, err)
	}
}

func (c *Client) fail(err error) {
	c.err = err
	c.conn.Close()
	close(c.done)
}

// sessionFor waits for the handshake within ctx.
func (c *Client) sessionFor(ctx context.Context) (*yamux.Session, error) {
	select {
	case <-c.ready:
		return c.session, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("guest agent not ready: %w", ctx.Err())
	}
}

// Close ends the session and closes the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.ready
	if c.session != nil {
		return c.session.Close()
	}
	return err
}

// Done is closed when the session ends: the VM went away, the handshake
// failed, or Close was called.
func (c *Client) Done() <-chan struct{} {
	return c.done
}

// Ready returns once the handshake is done: the agent read the host's hello and answered with
// ReadyMagic, so it runs and serves this session. It costs no round trip of its own, unlike Ping:
// the first request can follow at once.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.sessionFor(ctx)
	return err
}

// Ping returns once the agent answers. Because QEMU buffers the host's
// bytes until the guest opens its port, one Ping with the boot deadline is
// enough; retrying after a short per-try deadline is harmless too.
func (c *Client) Ping(ctx context.Context) (AgentInfo, error) {
	resp, err := c.call(ctx, Request{Op: OpPing})
	if err != nil {
		return AgentInfo{}, err
	}
	if resp.Info == nil {
		return AgentInfo{}, errors.New("guest agent ping: answer carries no agent info: the agent is too old or not a kata-deploy agent")
	}
	return *resp.Info, nil
}

// CreateContainer mounts the request's shares and prepares the container's
// init process in new namespaces. The user process is not executed until
// Start, so stdio can be attached in between without losing output.
func (c *Client) CreateContainer(ctx context.Context, req CreateContainerRequest) error {
	if req.Spec == nil || req.Spec.Process == nil || req.Spec.Root == nil {
		return errors.New("create container: the spec needs process and root")
	}
	_, err := c.call(ctx, Request{Op: OpCreateContainer, Container: req.ID, Spec: req.Spec, Shares: req.Shares, Devices: req.Devices,
		Seccomp: req.Seccomp})
	return err
}

// Stdio attaches to a process's stdin, stdout or stderr (StreamStdin, ...).
// Attach after Create/Exec and before Start: output written while a stream
// is not attached is discarded. Write stdin to the stream and Close it for
// EOF; read stdout/stderr until io.EOF, which comes after the process exited
// and its output was drained. Close may be called at any time: the stream
// keeps being drained in the background so the process never blocks on it.
// A process with a terminal has no stderr stream: its stdout carries the pty.
func (c *Client) Stdio(ctx context.Context, containerID, execID, stream string) (io.ReadWriteCloser, error) {
	st, br, err := c.exchange(ctx, Request{Op: OpStdio, Container: containerID, Exec: execID, Stream: stream})
	if err != nil {
		return nil, err
	}
	return &stdioStream{stream: st, r: br}, nil
}

// Start executes the prepared process (execID "" is the container's init) and
// returns its pid in the guest.
func (c *Client) Start(ctx context.Context, containerID, execID string) (int, error) {
	resp, err := c.call(ctx, Request{Op: OpStart, Container: containerID, Exec: execID})
	if err != nil {
		return 0, err
	}
	return resp.Pid, nil
}

// Exec prepares an additional process in the container's namespaces; Start
// runs it.
func (c *Client) Exec(ctx context.Context, containerID, execID string, p *specs.Process) error {
	if p == nil {
		return errors.New("exec: process is nil")
	}
	_, err := c.call(ctx, Request{Op: OpExec, Container: containerID, Exec: execID, Process: p})
	return err
}

// Wait returns the exit status once the process exited and the agent wrote
// and closed its stdout and stderr streams: the exit code, or 128+signal.
// Callers should still read their stdio streams to io.EOF before reporting
// the exit, since bytes may sit in the host's stream buffers.
func (c *Client) Wait(ctx context.Context, containerID, execID string) (int, error) {
	resp, err := c.call(ctx, Request{Op: OpWait, Container: containerID, Exec: execID})
	if err != nil {
		return 0, err
	}
	if execID == "" && resp.Synced {
		c.synced.Store(true)
	}
	return resp.ExitStatus, nil
}

// Synced reports whether a Wait for a container's init returned, and the guest said it wrote its
// file systems out after the init exited (Response.Synced): a host that removes the container
// then has nothing to ask the guest to write.
func (c *Client) Synced() bool { return c.synced.Load() }

// Signal sends sig to the process, or with all to every process of the
// container (execID is then ignored).
func (c *Client) Signal(ctx context.Context, containerID, execID string, sig syscall.Signal, all bool) error {
	_, err := c.call(ctx, Request{Op: OpSignal, Container: containerID, Exec: execID, Signal: int(sig), All: all})
	return err
}

// CloseStdin closes the process's stdin (EOF) even if a stdin stream is
// still attached.
func (c *Client) CloseStdin(ctx context.Context, containerID, execID string) error {
	_, err := c.call(ctx, Request{Op: OpCloseStdin, Container: containerID, Exec: execID})
	return err
}

// ResizePty sets the window size of the process's terminal.
func (c *Client) ResizePty(ctx context.Context, containerID, execID string, w, h uint32) error {
	_, err := c.call(ctx, Request{Op: OpResizePty, Container: containerID, Exec: execID, Width: w, Height: h})
	return err
}

// Pids lists the guest pids of the container's processes.
func (c *Client) Pids(ctx context.Context, containerID string) ([]int, error) {
	resp, err := c.call(ctx, Request{Op: OpPids, Container: containerID})
	if err != nil {
		return nil, err
	}
	return resp.Pids, nil
}

// Stats returns guest-wide memory and CPU usage and the container's process
// count.
func (c *Client) Stats(ctx context.Context, containerID string) (Stats, error) {
	resp, err := c.call(ctx, Request{Op: OpStats, Container: containerID})
	if err != nil {
		return Stats{}, err
	}
	if resp.Stats == nil {
		return Stats{}, errors.New("guest agent stats: answer carries no stats")
	}
	return *resp.Stats, nil
}

// RemoveContainer kills what is left of a container and forgets it, so that
// its ID can be used again. Shares stay mounted.
func (c *Client) RemoveContainer(ctx context.Context, containerID string) error {
	_, err := c.call(ctx, Request{Op: OpRemoveContainer, Container: containerID})
	return err
}

// Shutdown asks the agent to kill the containers, unmount, sync and power
// the VM off. The VM may vanish before the answer arrives: a closed session
// counts as success.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpShutdown})
	if err == nil || isClosed(err) {
		return nil
	}
	return err
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrStreamClosed) ||
		errors.Is(err, yamux.ErrConnectionReset) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// call runs one request stream to completion.
func (c *Client) call(ctx context.Context, req Request) (Response, error) {
	st, _, err := c.exchange(ctx, req)
	if err != nil {
		return Response{}, err
	}
	st.Close()
	return st.resp, nil
}

// callStream is a request stream and the response read from it.
type callStream struct {
	*yamux.Stream
	resp Response
}

// exchange opens a stream, sends req and reads the response line. On success
// the stream is left open (positioned after the response) for the caller.
func (c *Client) exchange(ctx context.Context, req Request) (*callStream, *bufio.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if d := OpTimeout(req.Op); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	session, err := c.sessionFor(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("guest agent %s: %w", req.Op, err)
	}
	// yamux's OpenStream cannot be interrupted once the guest stopped acknowledging streams: take
	// a token first, within ctx. It is returned once the guest answered (the stream is then
	// acknowledged), or once a failed stream is closed on both ends.
	select {
	case c.opening <- struct{}{}:
	case <-c.done:
		return nil, nil, fmt.Errorf("guest agent %s: %w", req.Op, yamux.ErrSessionShutdown)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.unanswered(req.Op, errors.New("the guest acknowledges no new streams"))
		}
		return nil, nil, fmt.Errorf("guest agent %s: open stream: the guest acknowledges no new streams: %w", req.Op, ctx.Err())
	}
	release := sync.OnceFunc(func() { <-c.opening })
	raw, err := session.OpenStream()
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("guest agent %s: open stream: %w", req.Op, err)
	}
	if OpTimeout(req.Op) == 0 {
		// A call without a deadline (Wait) is answered when the process exits, long after the
		// guest acknowledged its stream: the token goes back once a healthy guest has certainly
		// acknowledged it, so that long waits do not use up the tokens.
		t := time.AfterFunc(acknowledgeWithin, release)
		defer t.Stop()
	}
	st := &callStream{Stream: raw}
	// A cancelled context unblocks a pending read or write through the
	// stream's deadline; yamux has no other way to interrupt them.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	br := bufio.NewReader(raw)
	err = WriteMessage(raw, req)
	if err == nil {
		err = readMessage(br, &st.resp, maxResponseSize)
	}
	if err != nil {
		stop() // the context must not reset the drain's deadline once abandon has set it
		c.abandon(raw, release)
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				c.unanswered(req.Op, ctxErr)
			}
			return nil, nil, fmt.Errorf("guest agent %s: %w", req.Op, ctxErr)
		}
		return nil, nil, fmt.Errorf("guest agent %s: %w", req.Op, err)
	}
	release() // an answer came: the guest acknowledged the stream
	c.answered()
	if !stop() {
		// The context ended just as the answer came and the deadline may be
		// set at any moment: the stream is unusable.
		raw.Close()
		return nil, nil, fmt.Errorf("guest agent %s: %w", req.Op, context.Cause(ctx))
	}
	if st.resp.Error != "" {
		raw.Close()
		return nil, nil, &RemoteError{Op: req.Op, Message: st.resp.Error}
	}
	return st, br, nil
}

// abandon closes a stream that failed before its answer and returns its token once the stream
// is gone on both ends (the guest closed or reset it, the session ended, or yamux's close timeout
// passed): until then yamux still counts it as opening.
func (c *Client) abandon(raw *yamux.Stream, release func()) {
	raw.Close()
	go func() {
		_ = raw.SetReadDeadline(time.Time{})
		_, _ = io.Copy(io.Discard, raw)
		release()
	}()
}

// stdioStream is an attached stdio stream.
type stdioStream struct {
	stream *callStream
	r      *bufio.Reader
}

func (s *stdioStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *stdioStream) Write(p []byte) (int, error) { return s.stream.Write(p) }

// Close half-closes the stream (EOF for the agent) and drains whatever the
// agent still sends, so that a process writing to an abandoned stream is
// never blocked by flow control.
func (s *stdioStream) Close() error {
	err := s.stream.Close()
	go io.Copy(io.Discard, s.r)
	return err
}
