package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The init of a pid namespace gets only the signals it has a handler for (besides SIGKILL and
// SIGSTOP): the kernel drops the others. A program needs a moment after execve to install its
// handlers, a moment that a VM under emulation stretches to tens of milliseconds, so a
// `docker kill -s TERM` sent right after `docker start` returned would be dropped where runc's
// native speed wins the race. While the init is that young, a signal it would drop waits until
// the program has a handler for it, or until initSignalGrace after Start.

// initSignalGrace bounds the wait: a program that never handles the signal (sleep) ignores it,
// as it would under runc.
const initSignalGrace = 2 * time.Second

// awaitHandler waits, while the namespace init started less than initSignalGrace ago, until it
// catches sig.
func (p *nsProcess) awaitHandler(sig syscall.Signal) {
	if !p.nsInit || sig == syscall.SIGKILL || sig == syscall.SIGSTOP || p.startedAt.IsZero() {
		return
	}
	deadline := p.startedAt.Add(initSignalGrace)
	for time.Now().Before(deadline) {
		caught, err := catches(fmt.Sprintf("%s/%d/status", p.procDir, p.pid), sig)
		if err != nil || caught {
			return
		}
		select {
		case <-p.exited:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// catches reports whether the process whose /proc status file is at path has a handler for sig
// (its SigCgt mask).
func catches(path string, sig syscall.Signal) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return caughtIn(data, sig)
}

func caughtIn(status []byte, sig syscall.Signal) (bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, ok := bytes.CutPrefix(sc.Bytes(), []byte("SigCgt:"))
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
		if err != nil {
			return false, fmt.Errorf("reading SigCgt: %w", err)
		}
		return sig >= 1 && sig <= 64 && mask&(1<<(uint(sig)-1)) != 0, nil
	}
	return false, fmt.Errorf("no SigCgt line")
}
