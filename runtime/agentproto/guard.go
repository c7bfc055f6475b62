package agentproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The host's end of the channel trusts nothing the guest sends. Only the host opens streams (yamux
// client, odd ids); a stream the guest opens (even ids) would sit in yamux's accept backlog, each
// with a receive buffer the guest may fill, and nobody on the host ever accepts it. guardedConn
// sits between the channel and the host's yamux session: it drops every frame of a guest-opened
// stream before yamux sees it (so nothing is allocated for it), and answers its SYN with a reset.
// What yamux does see is bounded by yamux itself: a data frame larger than the stream's receive
// window (at most MaxStreamWindowSize) ends the session, and frames for unknown streams are
// discarded.

// ErrGuestStreams ends a session whose guest kept opening streams while not reading the resets.
var ErrGuestStreams = errors.New("the guest agent opens streams of its own and does not read the host's resets: the channel is closed")

// maxPendingResets bounds the resets owed to the guest for streams it opened: a guest that keeps
// opening streams faster than the host can reset them is slowed down (the host stops reading), and
// one that does not read the resets for resetTimeout loses its channel.
const (
	maxPendingResets = 64
	resetTimeout     = 10 * time.Second
)

const (
	yamuxTypeWindowUpdate = 1
	yamuxFlagSYN          = 1
	yamuxFlagRST          = 8
)

// guardedConn filters what the host's yamux session reads, and lets it inject resets between the
// frames yamux writes.
type guardedConn struct {
	net.Conn
	r io.Reader // the channel, after the handshake

	// read side; yamux reads from a single goroutine
	hdr     [yamuxHeaderSize]byte
	pending []byte // bytes of a passed header still to hand out
	pass    uint32 // payload bytes of a passed frame still to hand out
	err     error  // sticky read error

	wmu     sync.Mutex   // one writer on the channel; held while a write blocks
	out     frameTracker // frame boundaries of what yamux wrote; under wmu
	rmu     sync.Mutex   // never held across a write: the read side must not block on the guest
	resets  []uint32     // guest streams still to reset; under rmu
	kick    chan struct{}
	drained chan struct{} // a flush took the queue
	done    chan struct{}
	once    sync.Once
	refused atomic.Uint64
}

func newGuardedConn(r io.Reader, conn net.Conn) *guardedConn {
	g := &guardedConn{Conn: conn, r: r, kick: make(chan struct{}, 1), drained: make(chan struct{}, 1), done: make(chan struct{})}
	go g.flushLoop()
	return g
}

// Refused counts the streams the guest opened and the host reset.
func (g *guardedConn) Refused() uint64 { return g.refused.Load() }

func (g *guardedConn) Read(p []byte) (int, error) {
	for {
		if len(g.pending) > 0 {
			n := copy(p, g.pending)
			g.pending = g.pending[n:]
			return n, nil
		}
		if g.pass > 0 {
			n, err := g.r.Read(p[:min(uint32(len(p)), g.pass)])
			g.pass -= uint32(n)
			return n, err
		}
		if g.err != nil {
			return 0, g.err
		}
		if _, err := io.ReadFull(g.r, g.hdr[:]); err != nil {
			return 0, err
		}
		typ := g.hdr[1]
		flags := binary.BigEndian.Uint16(g.hdr[2:4])
		id := binary.BigEndian.Uint32(g.hdr[4:8])
		length := binary.BigEndian.Uint32(g.hdr[8:12])
		if id != 0 && id%2 == 0 {
			// A stream the guest opened: drop the frame, payload included, and reset the stream
			// once, when it is opened.
			if typ == yamuxTypeData && length > 0 {
				if _, err := io.CopyN(io.Discard, g.r, int64(length)); err != nil {
					return 0, err
				}
			}
			if flags&yamuxFlagSYN != 0 {
				if err := g.refuse(id); err != nil {
					g.err = err
				}
			}
			continue
		}
		g.pending = g.hdr[:]
		if typ == yamuxTypeData {
			g.pass = length
		}
	}
}

// refuse queues a reset of the guest's stream id.
func (g *guardedConn) refuse(id uint32) error {
	g.refused.Add(1)
	var timeout <-chan time.Time
	for {
		g.rmu.Lock()
		if len(g.resets) < maxPendingResets {
			g.resets = append(g.resets, id)
			g.rmu.Unlock()
			select {
			case g.kick <- struct{}{}:
			default:
			}
			return nil
		}
		g.rmu.Unlock()
		if timeout == nil {
			t := time.NewTimer(resetTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-g.drained:
		case <-timeout:
			return fmt.Errorf("%w (%d resets pending for %s)", ErrGuestStreams, maxPendingResets, resetTimeout)
		case <-g.done:
			return net.ErrClosed
		}
	}
}

// Write passes yamux's bytes on and sends the pending resets at the next frame boundary.
func (g *guardedConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	n, err := g.Conn.Write(p)
	g.out.advance(p[:n])
	if err != nil {
		return n, err
	}
	g.flushLocked()
	return n, nil
}

// flushLoop sends resets while yamux writes nothing.
func (g *guardedConn) flushLoop() {
	for {
		select {
		case <-g.kick:
			g.wmu.Lock()
			g.flushLocked()
			g.wmu.Unlock()
		case <-g.done:
			return
		}
	}
}

func (g *guardedConn) flushLocked() {
	if !g.out.atBoundary() {
		return
	}
	g.rmu.Lock()
	resets := g.resets
	g.resets = nil
	g.rmu.Unlock()
	if len(resets) == 0 {
		return
	}
	select {
	case g.drained <- struct{}{}:
	default:
	}
	buf := make([]byte, 0, len(resets)*yamuxHeaderSize)
	for _, id := range resets {
		var h [yamuxHeaderSize]byte
		h[1] = yamuxTypeWindowUpdate
		binary.BigEndian.PutUint16(h[2:4], yamuxFlagRST)
		binary.BigEndian.PutUint32(h[4:8], id)
		buf = append(buf, h[:]...)
	}
	_, _ = g.Conn.Write(buf) // a failed write ends the session through yamux's own writes
}

func (g *guardedConn) Close() error {
	g.once.Do(func() { close(g.done) })
	return g.Conn.Close()
}

// frameTracker follows yamux frame boundaries in a byte stream.
type frameTracker struct {
	hdr     [yamuxHeaderSize]byte
	hdrN    int
	payload uint32
}

func (t *frameTracker) atBoundary() bool { return t.hdrN == 0 && t.payload == 0 }

func (t *frameTracker) advance(p []byte) {
	for len(p) > 0 {
		if t.payload > 0 {
			skip := min(uint32(len(p)), t.payload)
			t.payload -= skip
			p = p[skip:]
			continue
		}
		n := copy(t.hdr[t.hdrN:], p)
		t.hdrN += n
		p = p[n:]
		if t.hdrN == yamuxHeaderSize {
			t.hdrN = 0
			if t.hdr[1] == yamuxTypeData {
				t.payload = binary.BigEndian.Uint32(t.hdr[8:12])
			}
		}
	}
}
