package pluginsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// processPath is the PATH the plugin runs with: it runs mkfs, fsck and mount.
const processPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Process is a plugin started outside systemd: its pid, and the kernel's start time of that pid
// (field 22 of /proc/PID/stat), which tells it apart from a later process given the same pid.
type Process struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// StartProcess starts the service in a session of its own (it outlives the installer, and a
// signal to the installer's terminal does not reach it), its output appended to logPath (0600).
func StartProcess(s Spec, logPath string) (Process, error) {
	if err := s.Validate(); err != nil {
		return Process{}, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Process{}, fmt.Errorf("opening the plugin's log: %w", err)
	}
	defer log.Close()
	args := s.Args()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = "/", []string{"PATH=" + processPath}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("starting %s: %w", s.Binary, err)
	}
	p := Process{PID: cmd.Process.Pid}
	st, _, err := readStat("/proc", p.PID)
	if err != nil {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		return Process{}, fmt.Errorf("reading the started plugin's start time: %w", err)
	}
	p.StartTime = st
	// Reap it should it exit while the installer still runs; once the installer is gone, init
	// (or the nearest subreaper) does.
	go func() { _, _ = cmd.Process.Wait() }()
	return p, nil
}

// Alive reports whether the recorded process still runs (not a zombie, not another process given
// the same pid).
func (p Process) Alive(procRoot string) bool {
	if p.PID <= 0 {
		return false
	}
	st, state, err := readStat(procRoot, p.PID)
	return err == nil && st == p.StartTime && state != 'Z' && state != 'X'
}

// ErrExited is returned by Check when the process is gone.
var ErrExited = errors.New("the plugin process exited")

// Check is nil while the process runs: WaitServing's alive function.
func (p Process) Check(procRoot string) func() error {
	return func() error {
		if !p.Alive(procRoot) {
			return fmt.Errorf("%w (pid %d)", ErrExited, p.PID)
		}
		return nil
	}
}

// Stop sends SIGTERM (kata-plugins removes its socket and exits), then SIGKILL after timeout.
// A process that is no longer the recorded one is left alone.
func (p Process) Stop(ctx context.Context, procRoot string, timeout time.Duration) error {
	if !p.Alive(procRoot) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping the plugin (pid %d): %w", p.PID, err)
	}
	if p.wait(ctx, procRoot, timeout) {
		return nil
	}
	if p.Alive(procRoot) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	if !p.wait(ctx, procRoot, 5*time.Second) {
		return fmt.Errorf("the plugin (pid %d) did not exit after SIGKILL", p.PID)
	}
	return nil
}

func (p Process) wait(ctx context.Context, procRoot string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if !p.Alive(procRoot) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return !p.Alive(procRoot)
}

// readStat returns the start time and state of a process from procRoot/PID/stat. The command
// name (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
func readStat(procRoot string, pid int) (startTime uint64, state byte, err error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(data)
}

func parseStat(data []byte) (startTime uint64, state byte, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat: no ')'")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, errors.New("malformed stat: too few fields")
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed stat: start time: %w", err)
	}
	return st, fields[0][0], nil
}
