package agent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// The guest's DNS relay on a loopback port (127.0.0.11:53 needs root and is the guest's), with a
// fake host on the other end of the stream.

func dnsQuery(id byte) []byte { return []byte{0xab, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'} }

func startRelay(t *testing.T) (*dnsRelay, string) {
	t.Helper()
	r := &dnsRelay{addr: "127.0.0.1:0"}
	if err := r.listen(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.udp.Close(); r.tcp.Close() })
	if err := r.listen(nil); err != nil { // idempotent
		t.Fatal(err)
	}
	return r, r.udp.LocalAddr().String()
}

// fakeHost answers every query with the query plus "!" (empty for queries ending in 'n').
func fakeHost(t *testing.T, r *dnsRelay) (stop func()) {
	t.Helper()
	agentEnd, hostEnd := net.Pipe()
	done := make(chan struct{})
	go func() { r.serveStream(agentEnd, bufio.NewReader(agentEnd)); close(done) }()
	go func() {
		for {
			q, err := agentproto.ReadDNSFrame(hostEnd)
			if err != nil {
				return
			}
			a := append(append([]byte(nil), q.Msg...), '!')
			if q.Msg[len(q.Msg)-1] == 'n' {
				a = nil
			}
			go agentproto.WriteDNSFrame(hostEnd, agentproto.DNSFrame{ID: q.ID, TCP: q.TCP, Msg: a})
		}
	}()
	// The stream is attached once serveStream has registered it.
	for i := 0; i < 100; i++ {
		r.mu.Lock()
		attached := r.upstream != nil
		r.mu.Unlock()
		if attached {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() {
		hostEnd.Close()
		<-done
	}
}

func TestDNSRelayUDPAndTCP(t *testing.T) {
	r, addr := startRelay(t)
	stop := fakeHost(t, r)
	defer stop()

	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.SetDeadline(time.Now().Add(5 * time.Second))
	udp.Write(dnsQuery(1))
	buf := make([]byte, 512)
	n, err := udp.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], append(dnsQuery(1), '!')) {
		t.Errorf("UDP answer %q, %v", buf[:n], err)
	}

	tcp, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(5 * time.Second))
	for id := byte(2); id < 4; id++ { // two queries on one connection
		q := dnsQuery(id)
		tcp.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
		var hdr [2]byte
		if _, err := io.ReadFull(tcp, hdr[:]); err != nil {
			t.Fatalf("TCP answer %d: %v", id, err)
		}
		a := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		io.ReadFull(tcp, a)
		if !bytes.Equal(a, append(q, '!')) {
			t.Errorf("TCP answer %q", a)
		}
	}
	// A query the host cannot answer closes the TCP connection (the client retries).
	q := append(dnsQuery(4)[:12], 'n')
	tcp.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
	if _, err := tcp.Read(buf); err != io.EOF {
		t.Errorf("after an unanswerable query: %v, want EOF", err)
	}
	r.mu.Lock()
	pending := len(r.pending)
	r.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d queries still pending", pending)
	}
}

func TestDNSRelayWithoutHost(t *testing.T) {
	r, addr := startRelay(t)
	stop := fakeHost(t, r)
	stop() // the host went away: queries are dropped, not queued
	r.mu.Lock()
	up := r.upstream
	r.mu.Unlock()
	if up != nil {
		t.Fatal("the relay kept a closed stream")
	}
	udp, _ := net.Dial("udp", addr)
	defer udp.Close()
	udp.SetDeadline(time.Now().Add(300 * time.Millisecond))
	udp.Write(dnsQuery(9))
	if _, err := udp.Read(make([]byte, 512)); err == nil {
		t.Error("got an answer without a host")
	}
	// A new host stream takes over.
	stop = fakeHost(t, r)
	defer stop()
	udp.SetDeadline(time.Now().Add(5 * time.Second))
	udp.Write(dnsQuery(10))
	buf := make([]byte, 512)
	if n, err := udp.Read(buf); err != nil || !bytes.Equal(buf[:n], append(dnsQuery(10), '!')) {
		t.Errorf("answer through the new stream %q, %v", buf[:n], err)
	}
}
