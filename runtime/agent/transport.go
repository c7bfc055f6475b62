package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Transport hands the agent one connection from the host at a time. The
// virtio-serial port is the one that works everywhere; a vsock listener can
// implement the same interface.
type Transport interface {
	// Accept blocks until a host is connected and returns the channel to it.
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
// an immediate EOF: Accept waits until the host side is open. Writes to a
// port without a host block, so when the host goes away the caller must
// close the file (Accept opens it again) to release pending writes.
type SerialPort struct {
	Name   string        // the port's name, e.g. "agent.0"
	SysDir string        // /sys/class/virtio-ports
	DevDir string        // /dev
	Poll   time.Duration // how often to look for the port and the host
	Log    *Logger
}

// Accept finds and opens the port and returns it once a host is connected.
func (p *SerialPort) Accept(ctx context.Context) (io.ReadWriteCloser, error) {
	interval := p.Poll
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	var dev string
	var f *os.File
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
			return false, nil // the previous session's descriptor is still closing
		}
		if err != nil {
			return false, fmt.Errorf("open virtio-serial port %s: %w", dev, err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for virtio-serial port %q: %w", p.Name, err)
	}
	p.Log.Debugf("opened %s (%s), waiting for the host", dev, p.Name)
	// The host usually connects first; when it does not, back off to a
	// tenth of a second so an idle guest does not spin.
	wait := interval
	err = poll(ctx, interval, func() (bool, error) {
		ok, err := hostConnected(f)
		if !ok && err == nil {
			time.Sleep(wait)
			wait = min(2*wait, 100*time.Millisecond)
		}
		return ok, err
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wait for the host on %s: %w", dev, err)
	}
	return f, nil
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
