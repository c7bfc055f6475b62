package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Transport hands the agent one connection from the host at a time. The
// virtio-serial port is the one that works everywhere; a vsock listener can
// implement the same interface.
type Transport interface {
	// Accept blocks until a host is connected and returns the channel to it.
	// Closing the channel ends that host's session; bytes a later host sent
	// meanwhile must survive it (see SerialPort).
	Accept(ctx context.Context) (io.ReadWriteCloser, error)
}

// ErrPortNotFound means no virtio-serial port with the wanted name exists.
var ErrPortNotFound = errors.New("virtio-serial port not found")

// FindPort returns the device node (devDir/vportNpM) of the virtio-serial
// port whose sysfs name (sysDir/vportNpM/name) is name.
func FindPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("list virtio-serial ports: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("%w: no %s/*/name reads %q: is virtio_console loaded and the port named %q on QEMU's command line?", ErrPortNotFound, sysDir, name, name)
}

// SerialPort is the agent's end of a virtio-serial port.
//
// The guest driver reports a host that is not connected as POLLHUP and makes
// read return 0, so a port opened before the host connects would look like
// an immediate EOF: Accept waits until the host side is open.
//
// The port stays open from one host session to the next. Closing it would
// discard what the guest kernel has already received: a new host's hello,
// sent the moment it connects, can arrive while the agent is still ending
// the previous session, and once dropped both sides would wait for each
// other forever. A session's Close interrupts its pending reads and writes
// instead (writes to a port without a host block), and leaves the input.
type SerialPort struct {
	Name   string        // the port's name, e.g. "agent.0"
	SysDir string        // /sys/class/virtio-ports
	DevDir string        // /dev
	Poll   time.Duration // how often to look for the port and the host
	Log    *Logger

	mu  sync.Mutex
	dev string
	f   *os.File // nil until opened, or after a session could only be ended by closing it
}

// Accept opens the port if it is not open yet and returns a session on it
// once a host is connected.
func (p *SerialPort) Accept(ctx context.Context) (io.ReadWriteCloser, error) {
	interval := p.Poll
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	f, dev, err := p.open(ctx, interval)
	if err != nil {
		return nil, fmt.Errorf("wait for virtio-serial port %q: %w", p.Name, err)
	}
	// The previous session's Close left a deadline in the past; its calls have returned.
	if err := f.SetDeadline(time.Time{}); err != nil && !errors.Is(err, os.ErrNoDeadline) {
		p.drop(f)
		return nil, fmt.Errorf("reset the deadline of %s: %w", dev, err)
	}
	p.Log.Debugf("%s (%s) is open, waiting for the host", dev, p.Name)
	// The host usually connects first; when it does not, back off to a
	// tenth of a second so an idle guest does not spin, and wake at once
	// when the host connects (a VM waiting in a pool, a restored clone).
	hostEvents, stop := portEvents(f, p.Log)
	defer stop()
	wait := interval
	err = poll(ctx, interval, func() (bool, error) {
		ok, err := hostConnected(f)
		if !ok && err == nil {
			select {
			case <-hostEvents:
				wait = interval
			case <-time.After(wait):
				wait = min(2*wait, 100*time.Millisecond)
			}
		}
		return ok, err
	})
	if err != nil {
		p.drop(f)
		return nil, fmt.Errorf("wait for the host on %s: %w", dev, err)
	}
	return &portSession{port: p, f: f}, nil
}

// open returns the port's file, finding and opening it first if needed.
func (p *SerialPort) open(ctx context.Context, interval time.Duration) (*os.File, string, error) {
	p.mu.Lock()
	f, dev := p.f, p.dev
	p.mu.Unlock()
	if f != nil {
		return f, dev, nil
	}
	complainAt := time.Now().Add(10 * time.Second)
	err := poll(ctx, interval, func() (bool, error) {
		var err error
		if dev, err = FindPort(p.SysDir, p.DevDir, p.Name); err != nil {
			if !complainAt.IsZero() && time.Now().After(complainAt) {
				p.Log.Errorf("still waiting: %v", err) // once, then keep waiting
				complainAt = time.Time{}
			}
			return false, nil // not probed yet
		}
		f, err = os.OpenFile(dev, os.O_RDWR, 0)
		if errors.Is(err, unix.EBUSY) {
			return false, nil // a dropped descriptor is still closing
		}
		if err != nil {
			return false, fmt.Errorf("open virtio-serial port %s: %w", dev, err)
		}
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	p.mu.Lock()
	p.f, p.dev = f, dev
	p.mu.Unlock()
	return f, dev, nil
}

// drop closes the port's file, for when nothing else releases a blocked call; the next Accept
// opens the port again.
func (p *SerialPort) drop(f *os.File) {
	p.mu.Lock()
	if p.f == f {
		p.f = nil
	}
	p.mu.Unlock()
	f.Close()
}

// portSession is one host session on the open port.
type portSession struct {
	port   *SerialPort
	f      *os.File
	mu     sync.Mutex
	closed bool
	active sync.WaitGroup // Read and Write calls in progress
}

// begin registers a call; it fails once the session is closed.
func (s *portSession) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return os.ErrClosed
	}
	s.active.Add(1)
	return nil
}

func (s *portSession) Read(b []byte) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.active.Done()
	return s.f.Read(b)
}

func (s *portSession) Write(b []byte) (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.active.Done()
	return s.f.Write(b)
}

// Close ends the session's calls without closing the port, and returns once none is in
// progress: nothing of this session can reach the next host after that host's ready.
func (s *portSession) Close() error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if first && s.f.SetDeadline(time.Now()) != nil {
		// Not pollable: only closing the file releases a blocked call.
		s.port.drop(s.f)
	}
	s.active.Wait()
	return nil
}

// hostConnected polls the port without blocking: POLLHUP means no host.
func hostConnected(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var revents int16
	var perr error
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
		_, perr = unix.Poll(fds, 0)
		revents = fds[0].Revents
	})
	if err == nil {
		err = perr
	}
	if err != nil && !errors.Is(err, unix.EINTR) {
		return false, err
	}
	if revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("port reports an error (revents %#x)", revents)
	}
	return revents&unix.POLLHUP == 0, nil
}

// portEvents asks for SIGIO on the port: the guest kernel sends it to the port's owner when the
// host opens or closes its end (virtio_console). stop ends the notification; without SIGIO (an
// error, logged) the channel stays silent and Accept polls.
func portEvents(f *os.File, log *Logger) (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGIO)
	stop := func() { signal.Stop(ch) }
	rc, err := f.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			if _, err = unix.FcntlInt(fd, unix.F_SETOWN, unix.Getpid()); err != nil {
				return
			}
			var flags int
			if flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil {
				_, err = unix.FcntlInt(fd, unix.F_SETFL, flags|unix.O_ASYNC)
			}
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		log.Debugf("no SIGIO from the port, polling for the host: %v", err)
	}
	return ch, stop
}

// poll calls check every interval until it reports done, fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, check func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
