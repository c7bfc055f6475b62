package agent

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPortSessionCloseKeepsInput: ending a host session must release its blocked read without
// closing the port, so bytes the next host sent meanwhile (its hello) are read by the next session.
func TestPortSessionCloseKeepsInput(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	port := &SerialPort{f: r}
	defer r.Close()
	old := &portSession{port: port, f: r}
	readErr := make(chan error, 1)
	go func() {
		_, err := old.Read(make([]byte, 16))
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // the old session blocks in Read
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; err == nil {
		t.Fatal("the old session's read returned no error after Close")
	}
	if _, err := old.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if port.f != r {
		t.Fatal("Close dropped a pollable port")
	}
	if err := r.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	next := &portSession{port: port, f: r}
	got := make([]byte, 5)
	if _, err := io.ReadFull(next, got); err != nil || string(got) != "hello" {
		t.Errorf("the next session read %q, %v", got, err)
	}
}

// TestPortEvents: portEvents delivers SIGIO when the descriptor's other end acts (on the real
// port, the host opening or closing it), and nothing once stopped.
func TestPortEvents(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, peer := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "peer")
	defer ours.Close()
	defer peer.Close()
	events, stop := portEvents(ours, NewLogger(io.Discard, false))
	peer.Write([]byte("x"))
	select {
	case <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("no SIGIO when the other end wrote")
	}
	stop()
}
