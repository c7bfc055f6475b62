package agent

import (
	"context"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper is the one place that waits for children. As PID 1 the agent
// inherits every orphan of the guest, so it must wait4(-1); no other code
// may wait (no exec.Cmd.Wait, no os.Process.Wait) or it would race with it.
// Exit statuses are handed to whoever registered the pid through Start.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan int
}

// NewReaper returns a reaper; call Run to start reaping.
func NewReaper() *Reaper {
	return &Reaper{waiters: make(map[int]chan int)}
}

// Run reaps children on every SIGCHLD until ctx ends.
func (r *Reaper) Run(ctx context.Context) {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	defer signal.Stop(ch)
	r.reap() // children that exited before Notify
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.reap()
		}
	}
}

// Start runs start, which must start one child and return its pid, and
// registers that pid before the reaper can collect it: the reaper holds the
// same lock while it waits. The returned channel yields the child's exit
// status (see ExitStatus) once.
func (r *Reaper) Start(start func() (int, error)) (int, <-chan int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan int, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ExitStatus(ws)
		}
	}
}

// ExitStatus encodes a wait status the way shells and Docker do: the exit
// code, or 128+signal for a process killed by a signal.
func ExitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return 255
	}
}
