package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// Docker's embedded DNS server answers on 127.0.0.11:53 inside the container's network namespace
// (dockerd listens on random ports there, and NAT rules in the namespace send port 53 to them).
// The guest has its own loopback, so a query to 127.0.0.11 from a process in the VM never
// reaches it: upstream Kata breaks name resolution between containers here.
//
// The relay: the agent listens on 127.0.0.11:53 (UDP and TCP) in the guest and forwards every
// query over a stream the shim opened for it (the agent cannot open streams itself). The shim
// sends each query from a socket it created inside the container's namespace, so it reaches
// dockerd exactly as a runc container's query would, over the same transport (a truncated UDP
// answer makes the client retry over TCP, which is relayed as TCP), and returns the answer.
// Relaying DNS messages rather than packets keeps it independent of the guest's routes and of
// the tc redirect.

// dnsServer is where the relay sends queries.
const dnsServer = agentproto.DockerDNS + ":53"

// Bounds of the relay.
const (
	dnsTimeout  = 5 * time.Second // per query, as a stub resolver's default
	dnsInFlight = 64              // queries answered at once; more wait
)

// dialFunc opens a connection to the DNS server ("udp" or "tcp").
type dialFunc func(ctx context.Context, network string) (net.Conn, error)

// dnsRelay answers the guest's queries arriving on stream.
type dnsRelay struct {
	stream io.ReadWriteCloser
	dial   dialFunc
	wmu    sync.Mutex // one frame at a time on the stream
	logf   func(format string, args ...any)
}

// startDNS opens the relay stream to the agent and serves it until the Manager closes.
func (m *Manager) startDNS(ctx context.Context) error {
	stream, err := m.opts.Agent.DNS(ctx)
	if err != nil {
		return fmt.Errorf("starting the DNS relay in the guest (container names would not resolve): %w", err)
	}
	r := &dnsRelay{stream: stream, dial: m.dialDNS, logf: m.opts.Logf}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.serve(m.ctx)
	}()
	return nil
}

// dialDNS connects to Docker's DNS server from inside the container's namespace: the socket is
// created there, on a thread that is switched into it.
func (m *Manager) dialDNS(ctx context.Context, network string) (net.Conn, error) {
	var conn net.Conn
	err := inNamespace(m.ns, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, dnsServer)
		return err
	})
	return conn, err
}

// serve reads queries until the stream ends or ctx does; the stream is closed on return.
func (r *dnsRelay) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { r.stream.Close() })
	defer stop()
	defer r.stream.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, dnsInFlight)
	for {
		q, err := agentproto.ReadDNSFrame(r.stream)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				r.logf("DNS relay: %v", err)
			}
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r.answer(ctx, q)
		}()
	}
}

// answer sends the answer to q, or an empty frame when there is none: the agent then forgets the
// query and the client retries.
func (r *dnsRelay) answer(ctx context.Context, q agentproto.DNSFrame) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	msg, err := r.exchange(ctx, q)
	if err != nil {
		msg = nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_ = agentproto.WriteDNSFrame(r.stream, agentproto.DNSFrame{ID: q.ID, TCP: q.TCP, Msg: msg})
}

// exchange asks the DNS server, over TCP if the guest's client used TCP.
func (r *dnsRelay) exchange(ctx context.Context, q agentproto.DNSFrame) ([]byte, error) {
	if len(q.Msg) < 12 {
		return nil, errors.New("DNS query shorter than its header")
	}
	network := "udp"
	if q.TCP {
		network = "tcp"
	}
	conn, err := r.dial(ctx, network)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if q.TCP {
		return exchangeTCP(conn, q.Msg)
	}
	return exchangeUDP(conn, q.Msg)
}

// exchangeUDP sends one datagram and returns the first answer with the query's DNS ID.
func exchangeUDP(conn net.Conn, query []byte) ([]byte, error) {
	if _, err := conn.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, agentproto.MaxDNSMessage)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 12 && buf[0] == query[0] && buf[1] == query[1] {
			return buf[:n:n], nil
		}
	}
}

// exchangeTCP sends one length-prefixed query and reads one length-prefixed answer (RFC 1035
// 4.2.2).
func exchangeTCP(conn net.Conn, query []byte) ([]byte, error) {
	out := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(out, uint16(len(query)))
	copy(out[2:], query)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(conn, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
