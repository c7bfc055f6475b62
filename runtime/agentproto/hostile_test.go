package agentproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// The tests below put a hostile agent on the other end of a socketpair: it speaks the protocol
// well enough to pass the handshake, then misbehaves. The host's client must stay bounded in
// memory and in time.

// channel returns the host's and the agent's ends of a socketpair.
func channel(t *testing.T) (host, agent net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "channel")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// hostileClient starts a client and completes the agent's side of the handshake; the agent's
// end of the channel is returned positioned at the start of the yamux session.
func hostileClient(t *testing.T, logf func(string, ...any)) (*Client, net.Conn) {
	t.Helper()
	host, agent := channel(t)
	c, err := NewClient(host, WithLogf(logf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := AwaitHello(agent); err != nil {
		t.Fatal(err)
	}
	if err := SendReady(agent); err != nil {
		t.Fatal(err)
	}
	return c, agent
}

// serve answers every request on the agent's session with an empty success (ping: agent info).
func serve(s *yamux.Session) {
	for {
		st, err := s.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			var req Request
			if err := ReadMessage(bufio.NewReader(st), &req); err != nil {
				return
			}
			_ = WriteMessage(st, Response{Info: &AgentInfo{}, Stats: &Stats{}})
		}()
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// frame is a raw yamux frame header.
func frame(typ byte, flags uint16, id, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

// TestGuestOpenedStreamsAreRefused: a guest that opens hundreds of streams and fills each with
// data makes the host hold nothing (without the guard yamux queues 256 of them with their
// buffers: 64 MiB), each stream is reset, and the session keeps serving the host's calls.
func TestGuestOpenedStreamsAreRefused(t *testing.T) {
	c, agent := hostileClient(t, t.Logf)
	s, err := NewServerSession(agent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go serve(s)
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping before the flood: %v", err)
	}
	before := heapInUse()
	const streams, perStream = 300, 256 << 10
	chunk := make([]byte, perStream)
	var wg sync.WaitGroup
	var resets sync.Map
	for range streams {
		st, err := s.OpenStream()
		if err != nil {
			t.Fatalf("guest opens a stream: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The window lets the guest send 256 KiB before the host reads anything.
			if _, err := st.Write(chunk); err != nil {
				resets.Store(st.StreamID(), err)
			}
			// A reset stream refuses reads at once.
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := st.Read(make([]byte, 1)); errors.Is(err, yamux.ErrConnectionReset) {
				resets.Store(st.StreamID(), err)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for c.RefusedStreams() < streams && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.RefusedStreams(); got != streams {
		t.Errorf("refused %d of the guest's %d streams", got, streams)
	}
	n := 0
	resets.Range(func(any, any) bool { n++; return true })
	if n != streams {
		t.Errorf("the guest saw %d of its %d streams reset", n, streams)
	}
	if grown := int64(heapInUse()) - int64(before); grown > 8<<20 {
		t.Errorf("the host's heap grew by %d MiB while the guest pushed %d MiB into streams of its own", grown>>20, streams*perStream>>20)
	}
	if _, err := c.Ping(context.Background()); err != nil {
		t.Errorf("ping after the flood: %v", err)
	}
}

// TestGuestStreamFloodWithoutReading: a guest that opens streams and never reads the host's resets
// gets its channel closed with a clear error instead of an ever-growing reset queue.
func TestGuestStreamFloodWithoutReading(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	c, agent := hostileClient(t, func(f string, a ...any) {
		mu.Lock()
		logged = append(logged, f)
		mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for id := uint32(2); ctx.Err() == nil; id += 2 {
			if _, err := agent.Write(frame(yamuxTypeWindowUpdate, yamuxFlagSYN, id, 0)); err != nil {
				return
			}
		}
	}()
	// Fill the host's outgoing socket buffer so that resets cannot be written: the guest never
	// reads.
	go func() {
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 100*time.Millisecond)
			_, _ = c.Stdio(pctx, "c", "", strings.Repeat("x", 64<<10))
			pcancel()
		}
	}()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the channel of a guest flooding streams without reading is still open after 20s")
	}
	if c.RefusedStreams() < maxPendingResets {
		t.Errorf("refused %d streams, want at least %d", c.RefusedStreams(), maxPendingResets)
	}
	if _, err := c.Ping(context.Background()); err == nil {
		t.Error("ping works on a closed channel")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(logged, "\n"), "channel closed") {
		t.Errorf("no notice of the closed channel was logged: %q", logged)
	}
}

// TestOversizedFrames: a data frame larger than the stream's window ends the session (yamux
// refuses it before buffering it); a huge frame on a stream the guest opened is skipped without
// being buffered; an answer line over the response limit fails the call.
func TestOversizedFrames(t *testing.T) {
	t.Run("beyond the window", func(t *testing.T) {
		c, agent := hostileClient(t, t.Logf)
		go func() {
			// Wait for the host's SYN of stream 1, then claim 1 GiB on it.
			hdr := make([]byte, yamuxHeaderSize)
			if _, err := io.ReadFull(agent, hdr); err != nil {
				return
			}
			agent.Write(frame(yamuxTypeData, 2 /* ACK */, 1, 1<<30))
			agent.Write(make([]byte, 1<<20))
		}()
		before := heapInUse()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Ping(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ping answered with a 1 GiB frame: %v, want a closed session", err)
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Error("the session survived a frame beyond its window")
		}
		if grown := int64(heapInUse()) - int64(before); grown > 8<<20 {
			t.Errorf("heap grew by %d MiB", grown>>20)
		}
	})
	t.Run("huge frame on a guest stream", func(t *testing.T) {
		c, agent := hostileClient(t, t.Logf)
		s, err := NewServerSession(agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go serve(s)
		before := heapInUse()
		const size = 32 << 20
		// Raw bytes on the shared channel would interleave with the session's frames, so the
		// frame goes through a session-less second channel.
		c2, agent2 := hostileClient(t, t.Logf)
		go func() {
			agent2.Write(frame(0, yamuxFlagSYN, 2, size))
			agent2.Write(make([]byte, size))
			agent2.Write(frame(yamuxTypeWindowUpdate, 0, 4, 0))
		}()
		deadline := time.Now().Add(10 * time.Second)
		for c2.RefusedStreams() < 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if c2.RefusedStreams() != 1 {
			t.Errorf("refused %d streams, want 1", c2.RefusedStreams())
		}
		if grown := int64(heapInUse()) - int64(before); grown > 8<<20 {
			t.Errorf("heap grew by %d MiB for a %d MiB frame", grown>>20, size>>20)
		}
		if _, err := c.Ping(context.Background()); err != nil {
			t.Errorf("ping: %v", err)
		}
	})
	t.Run("answer beyond the response limit", func(t *testing.T) {
		c, agent := hostileClient(t, t.Logf)
		s, err := NewServerSession(agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			ReadMessage(bufio.NewReader(st), &Request{})
			WriteMessage(st, Response{Error: strings.Repeat("x", 2*maxResponseSize)})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Ping(ctx); err == nil || !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("ping with an oversized answer: %v", err)
		}
	})
}

// TestCallsHaveDeadlines: an agent that accepts streams and never answers, or never acknowledges
// them at all, makes every call fail within its deadline; the client is marked unresponsive (logged
// once) and healthy again once the guest answers.
func TestCallsHaveDeadlines(t *testing.T) {
	t.Run("default deadline", func(t *testing.T) {
		old := opTimeouts[OpStats]
		opTimeouts[OpStats] = 300 * time.Millisecond
		defer func() { opTimeouts[OpStats] = old }()
		c, agent := hostileClient(t, t.Logf)
		s, err := NewServerSession(agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() { // accept, never answer
			for {
				if _, err := s.AcceptStream(); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		_, err = c.Stats(context.Background(), "c")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Errorf("stats without a caller deadline: %v after %s", err, time.Since(start))
		}
		if c.Unresponsive() == nil {
			t.Error("a guest that did not answer is not marked unresponsive")
		}
	})
	t.Run("streams never acknowledged", func(t *testing.T) {
		var mu sync.Mutex
		notices := 0
		c, agent := hostileClient(t, func(f string, a ...any) {
			mu.Lock()
			if strings.Contains(f, "unresponsive") {
				notices++
			}
			mu.Unlock()
		})
		go io.Copy(io.Discard, agent) // reads everything, answers nothing
		// More calls than yamux's 256 unacknowledged streams: without a bound of its own the
		// client blocks in OpenStream for ever.
		const calls = 400
		var wg sync.WaitGroup
		start := time.Now()
		errs := make(chan error, calls)
		for range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				errs <- c.Signal(ctx, "c", "", syscall.SIGKILL, false)
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("calls with a 1s deadline still blocked after 15s")
		}
		close(errs)
		for err := range errs {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call: %v, want the deadline", err)
			}
		}
		t.Logf("%d calls failed within %s", calls, time.Since(start).Round(time.Millisecond))
		if c.Unresponsive() == nil {
			t.Error("not marked unresponsive")
		}
		mu.Lock()
		defer mu.Unlock()
		if notices != 1 {
			t.Errorf("logged %d unresponsive notices, want 1", notices)
		}
	})
	t.Run("recovers", func(t *testing.T) {
		c, agent := hostileClient(t, t.Logf)
		s, err := NewServerSession(agent, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c.Stats(ctx, "c") // nobody serves yet
		cancel()
		if c.Unresponsive() == nil {
			t.Fatal("not marked unresponsive")
		}
		go serve(s)
		if _, err := c.Stats(context.Background(), "c"); err != nil {
			t.Fatal(err)
		}
		if err := c.Unresponsive(); err != nil {
			t.Errorf("still unresponsive after an answer: %v", err)
		}
	})
}

// TestLongWaitsDoNotUseUpStreams: more processes than stream tokens waiting for their exit do not
// keep other calls from being made.
func TestLongWaitsDoNotUseUpStreams(t *testing.T) {
	old := acknowledgeWithin
	acknowledgeWithin = 100 * time.Millisecond
	defer func() { acknowledgeWithin = old }()
	c, agent := hostileClient(t, t.Logf)
	s, err := NewServerSession(agent, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() { // answers everything but Wait, which blocks as for a running process
		for {
			st, err := s.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				var req Request
				if err := ReadMessage(bufio.NewReader(st), &req); err != nil || req.Op == OpWait {
					return
				}
				defer st.Close()
				_ = WriteMessage(st, Response{Stats: &Stats{}})
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 2 * maxOpening {
		go c.Wait(ctx, "c", fmt.Sprint(i))
	}
	time.Sleep(time.Second)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if _, err := c.Stats(sctx, "c"); err != nil {
		t.Errorf("stats while %d processes are waited for: %v", 2*maxOpening, err)
	}
}
