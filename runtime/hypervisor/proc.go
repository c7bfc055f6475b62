package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a process held by a pidfd: signals reach that very process even
// if its pid is reused, and exit is seen whether or not it is our child
// (the daemonized QEMU is not).
type proc struct {
	pid  int
	done chan struct{}

	mu sync.Mutex
	fd int // -1 once the process has exited
}

// watchProc opens a pidfd for pid and closes the returned proc's done
// channel when the process exits.
func watchProc(pid int) (*proc, error) {
	p, err := openProc(pid)
	if err != nil {
		return nil, err
	}
	go p.watch()
	return p, nil
}

// openProc holds pid through a pidfd without watching it yet: a caller that checks first what the
// process is can let go of it (close) without leaving a watcher behind.
func openProc(pid int) (*proc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	return &proc{pid: pid, fd: fd, done: make(chan struct{})}, nil
}

// close lets go of a process openProc returned and that is not watched.
func (p *proc) close() {
	_ = unix.Close(p.fd)
	p.fd = -1
}

func (p *proc) watch() {
	_ = waitPidfd(p.fd, -1)
	p.mu.Lock()
	reap(p.fd)
	_ = unix.Close(p.fd)
	p.fd = -1
	p.mu.Unlock()
	close(p.done)
}

// signal sends sig unless the process has already exited.
func (p *proc) signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil
	}
	if err := unix.PidfdSendSignal(p.fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// exited reports whether the process is gone.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitDone waits for exit up to d or until ctx ends.
func waitDone(ctx context.Context, done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// waitPidfd blocks until the pidfd's process exits (a zombie counts) or
// timeout ms pass (-1: forever). It reports whether the process exited.
func waitPidfd(fd int, timeoutMS int) bool {
	deadline := time.Now().Add(time.Duration(timeoutMS) * time.Millisecond)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, timeoutMS)
		if errors.Is(err, unix.EINTR) {
			if timeoutMS >= 0 {
				timeoutMS = max(0, int(time.Until(deadline).Milliseconds()))
			}
			continue
		}
		return err == nil && n > 0
	}
}

// reap collects the exit status if the process is our child (it is when
// the caller is a child subreaper), so that no zombie is left behind.
func reap(pidfd int) {
	var info unix.Siginfo
	_ = unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
}

// killIfOurs kills pid with SIGKILL if ours says it is the process we
// started (so that a recycled pid is never hit), and waits up to timeout
// for it to exit. A process that is already gone is not an error.
func killIfOurs(pid int, ours func(pid int) bool, timeout time.Duration) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(fd)
	// The pidfd pins the process: if the check below reads a newer
	// process with the same pid, the signal goes to the old one, which
	// is gone, and so nowhere.
	if !ours(pid) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	if !waitPidfd(fd, int(timeout.Milliseconds())) {
		return fmt.Errorf("pid %d did not exit within %s of SIGKILL (stuck in the kernel?)", pid, timeout)
	}
	reap(fd)
	return nil
}

// cmdlineMentions reports whether /proc/<pid>/cmdline contains mark.
func cmdlineMentions(pid int, mark string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte(mark))
}

// readPidFile reads a decimal pid, as QEMU's -pidfile writes it.
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", path, bytes.TrimSpace(b))
	}
	return pid, nil
}

// procStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat): with the pid it identifies a process.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses;
	// the fields after its closing parenthesis start at field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	const startTimeField = 22 - 3
	if len(fields) <= startTimeField {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[startTimeField], 10, 64)
}

// writeIdentity records a process we started as "<pid> <start time>".
func writeIdentity(path string, pid int) error {
	st, err := procStartTime(pid)
	if err != nil {
		return fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %d\n", pid, st)), 0o600)
}

// readIdentity reads what writeIdentity wrote.
func readIdentity(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("pid file %s holds %q, not \"<pid> <start time>\"", path, bytes.TrimSpace(b))
	}
	return pid, start, nil
}

// startedAt reports whether pid is still the process that started at start.
func startedAt(start uint64) func(pid int) bool {
	return func(pid int) bool {
		st, err := procStartTime(pid)
		return err == nil && st == start
	}
}

// mentions reports whether pid's command line contains mark. A zombie's
// command line is empty: it has nothing left to kill.
func mentions(mark string) func(pid int) bool {
	return func(pid int) bool { return cmdlineMentions(pid, mark) }
}
