package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// The guest's end of the DNS relay (see runtime/network/dns.go for the whole picture): the agent
// serves 127.0.0.11:53 over UDP and TCP in the guest, where the container's resolv.conf sends
// queries, and hands each query to the host over the stream the host opened with OpDNS. The
// container's processes share the guest's network namespace, so they reach this listener.
//
// A container that binds port 53 on all addresses itself (a DNS server) collides with the
// listener; the host only asks for the relay when the container's resolv.conf names 127.0.0.11.

// dnsQueryTimeout is how long a query waits for the host's answer; a stub resolver retries after
// about as long.
const dnsQueryTimeout = 10 * time.Second

// dnsTCPIdle closes a TCP client that sends no further query.
const dnsTCPIdle = 30 * time.Second

// dnsRelay hands queries to the host and answers to the clients.
type dnsRelay struct {
	addr string // listen address; "" is 127.0.0.11:53
	log  *Logger

	mu       sync.Mutex
	udp      *net.UDPConn
	tcp      net.Listener
	upstream *relayStream // the host's current stream, nil while no host listens
	pending  map[uint32]func(answer []byte)
	nextID   uint32
}

// relayStream is one host stream; frames are written whole, one at a time.
type relayStream struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *relayStream) send(f agentproto.DNSFrame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return agentproto.WriteDNSFrame(s.w, f)
}

// serveDNS answers an OpDNS request: it makes sure the listeners run, answers, and then relays
// answers from the stream until the host closes it.
func (s *Server) serveDNS(st net.Conn, br *bufio.Reader, req agentproto.Request) {
	r := &s.net.dns
	err := dnsLoopbackUp()
	if err == nil {
		err = r.listen(s.cfg.Log)
	}
	if err != nil {
		s.reply(st, req, agentproto.Response{Error: err.Error()})
		st.Close()
		return
	}
	s.reply(st, req, agentproto.Response{})
	r.serveStream(st, br)
}

// dnsLoopbackUp brings lo up: 127.0.0.11 is a local address only while it is.
func dnsLoopbackUp() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening a netlink socket: %w", err)
	}
	defer h.Close()
	return loopbackUp(h)
}

// listen starts the UDP and TCP listeners once; later calls return at once.
func (r *dnsRelay) listen(log *Logger) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.udp != nil {
		return nil
	}
	addr := r.addr
	if addr == "" {
		addr = agentproto.DockerDNS + ":53"
	}
	uaddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return err
	}
	udp, err := net.ListenUDP("udp4", uaddr)
	if err != nil {
		return fmt.Errorf("serving DNS on %s/udp in the guest: %w", addr, err)
	}
	// The same port for TCP (a resolver retries a truncated answer over TCP to the same server).
	tcp, err := net.Listen("tcp4", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return fmt.Errorf("serving DNS on %s/tcp in the guest: %w", addr, err)
	}
	r.udp, r.tcp, r.log = udp, tcp, log
	r.pending = map[uint32]func([]byte){}
	go r.serveUDP(udp)
	go r.serveTCP(tcp)
	return nil
}

// serveStream makes st the host's stream and delivers the answers arriving on it until it ends.
func (r *dnsRelay) serveStream(st io.ReadWriteCloser, br io.Reader) {
	defer st.Close()
	up := &relayStream{w: st}
	r.mu.Lock()
	r.upstream = up
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.upstream == up {
			r.upstream = nil
		}
		r.mu.Unlock()
	}()
	for {
		f, err := agentproto.ReadDNSFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.log.Debugf("DNS relay stream: %v", err)
			}
			return
		}
		if deliver := r.take(f.ID); deliver != nil {
			deliver(f.Msg)
		}
	}
}

// forward hands a query to the host; deliver gets the answer (empty: none) unless the query is
// dropped first (no host, or no answer within dnsQueryTimeout).
func (r *dnsRelay) forward(msg []byte, tcp bool, deliver func([]byte)) bool {
	r.mu.Lock()
	up := r.upstream
	if up == nil {
		r.mu.Unlock()
		return false
	}
	r.nextID++
	id := r.nextID
	r.pending[id] = deliver
	r.mu.Unlock()
	time.AfterFunc(dnsQueryTimeout, func() { r.take(id) })
	if err := up.send(agentproto.DNSFrame{ID: id, TCP: tcp, Msg: msg}); err != nil {
		r.take(id)
		return false
	}
	return true
}

// take removes and returns the pending query id.
func (r *dnsRelay) take(id uint32) func([]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	deliver := r.pending[id]
	delete(r.pending, id)
	return deliver
}

func (r *dnsRelay) serveUDP(conn *net.UDPConn) {
	buf := make([]byte, agentproto.MaxDNSMessage)
	for {
		n, client, err := conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 12 { // not even a DNS header
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		r.forward(msg, false, func(answer []byte) {
			if len(answer) > 0 {
				conn.WriteToUDP(answer, client)
			}
		})
	}
}

func (r *dnsRelay) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go r.serveTCPConn(c)
	}
}

// serveTCPConn answers the length-prefixed queries of one TCP client in order.
func (r *dnsRelay) serveTCPConn(c net.Conn) {
	defer c.Close()
	for {
		c.SetDeadline(time.Now().Add(dnsTCPIdle))
		var hdr [2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, msg); err != nil || len(msg) < 12 {
			return
		}
		answers := make(chan []byte, 1)
		if !r.forward(msg, true, func(a []byte) { answers <- a }) {
			return
		}
		var answer []byte
		select {
		case answer = <-answers:
		case <-time.After(dnsQueryTimeout):
		}
		if len(answer) == 0 {
			return
		}
		out := make([]byte, 2+len(answer))
		binary.BigEndian.PutUint16(out, uint16(len(answer)))
		copy(out[2:], answer)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
