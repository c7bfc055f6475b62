package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// fakeDNS answers every query on 127.0.0.1 (UDP and TCP, same port) with the query plus a marker
// naming the transport. On UDP it first sends a stray datagram with another DNS ID, which the
// relay must skip.
type fakeDNS struct {
	udp *net.UDPConn
	tcp net.Listener
}

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	// UDP and TCP on one port: the UDP port the kernel picks may be taken on TCP, then try again.
	var udp *net.UDPConn
	var tcp net.Listener
	var err error
	for range 20 {
		if udp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		if tcp, err = net.Listen("tcp4", udp.LocalAddr().String()); err == nil {
			break
		}
		udp.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{udp: udp, tcp: tcp}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := udp.ReadFromUDP(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			stray := append([]byte{q[0] ^ 0xff, q[1]}, q[2:]...)
			udp.WriteToUDP(stray, from)
			udp.WriteToUDP(append(q, "/udp"...), from)
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [2]byte
				io.ReadFull(c, hdr[:])
				q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
				io.ReadFull(c, q)
				a := append(q, "/tcp"...)
				out := binary.BigEndian.AppendUint16(nil, uint16(len(a)))
				c.Write(append(out, a...))
			}()
		}
	}()
	return f
}

func (f *fakeDNS) dial(ctx context.Context, network string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, f.udp.LocalAddr().String())
}

func query(id byte) []byte {
	return []byte{0x12, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'q'}
}

func TestDNSRelay(t *testing.T) {
	dns := startFakeDNS(t)
	host, agent := net.Pipe()
	r := &dnsRelay{stream: host, dial: dns.dial, logf: t.Logf}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { r.serve(ctx); close(served) }()

	// The agent's side: several queries in flight at once, answers in any order.
	var wmu sync.Mutex
	send := func(f agentproto.DNSFrame) {
		wmu.Lock()
		defer wmu.Unlock()
		if err := agentproto.WriteDNSFrame(agent, f); err != nil {
			t.Error(err)
		}
	}
	queries := map[uint32]agentproto.DNSFrame{
		1: {ID: 1, Msg: query(1)},
		2: {ID: 2, TCP: true, Msg: query(2)},
		3: {ID: 3, Msg: query(3)},
		4: {ID: 4, Msg: []byte("short")}, // not DNS: answered with an empty frame
	}
	for _, q := range queries {
		go send(q)
	}
	// len(queries) once: ranging over the map itself while answers delete from it can end early.
	for range len(queries) {
		agent.SetReadDeadline(time.Now().Add(10 * time.Second))
		a, err := agentproto.ReadDNSFrame(agent)
		if err != nil {
			t.Fatalf("reading an answer: %v", err)
		}
		q, ok := queries[a.ID]
		if !ok {
			t.Fatalf("answer for unknown id %d", a.ID)
		}
		delete(queries, a.ID)
		want := []byte(nil)
		switch {
		case len(q.Msg) < 12:
		case q.TCP:
			want = append(append([]byte(nil), q.Msg...), "/tcp"...)
		default:
			want = append(append([]byte(nil), q.Msg...), "/udp"...)
		}
		if a.TCP != q.TCP || !bytes.Equal(a.Msg, want) {
			t.Errorf("answer %d: tcp %v msg %q, want tcp %v msg %q", a.ID, a.TCP, a.Msg, q.TCP, want)
		}
	}
	cancel()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not stop when its context ended")
	}
}

func TestDNSRelayStopsAtEOF(t *testing.T) {
	host, agent := net.Pipe()
	r := &dnsRelay{stream: host, dial: func(context.Context, string) (net.Conn, error) { return nil, io.EOF }, logf: t.Logf}
	served := make(chan struct{})
	go func() { r.serve(context.Background()); close(served) }()
	agent.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not stop when the agent closed the stream")
	}
}

func TestDNSRelayUnreachableServer(t *testing.T) {
	host, agent := net.Pipe()
	r := &dnsRelay{stream: host, dial: func(context.Context, string) (net.Conn, error) { return nil, io.ErrClosedPipe }, logf: t.Logf}
	go r.serve(context.Background())
	defer agent.Close()
	go agentproto.WriteDNSFrame(agent, agentproto.DNSFrame{ID: 42, Msg: query(1)})
	agent.SetReadDeadline(time.Now().Add(5 * time.Second))
	a, err := agentproto.ReadDNSFrame(agent)
	if err != nil || a.ID != 42 || len(a.Msg) != 0 {
		t.Errorf("answer %+v, %v: want an empty answer for id 42", a, err)
	}
}
