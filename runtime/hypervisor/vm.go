package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kata-containers/govmm/qemu"
	"golang.org/x/sys/unix"
)

// Timeouts of the teardown steps. They bound how long Stop takes when QEMU
// does not cooperate; a cooperating QEMU exits within milliseconds.
const (
	qmpTimeout  = 2 * time.Second
	quitGrace   = 3 * time.Second
	killTimeout = 5 * time.Second
	daemonGrace = time.Second
	consoleTail = 4 << 10
)

// VM is a running QEMU. Its methods may be called from several goroutines.
type VM struct {
	PID         int    // QEMU's pid (in the caller's pid namespace)
	AgentSocket string // unix socket of the agent.0 virtio-serial port; QEMU listens
	QMPSocket   string
	StateDir    string
	ConsolePath string // the guest's ttyS0

	cfg     Config
	layout  layout
	proc    *proc
	daemons []*daemon
	nics    nicSlots        // hot-plugged NICs (hotplug.go)
	console <-chan struct{} // closed when the console drain has ended (console.go)

	stopMu  sync.Mutex
	stopped bool
}

// Start boots a VM and returns once QEMU runs; the guest may still be
// booting (connect to AgentSocket and wait for the agent). On error
// nothing is left behind: no process, no socket, no state directory.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	l := newLayout(cfg.StateDir)
	if err := makeStateDir(l.dir); err != nil {
		return nil, err
	}
	vm := &VM{
		AgentSocket: l.agent, QMPSocket: l.qmp, StateDir: l.dir, ConsolePath: l.console,
		cfg: cfg, layout: l,
	}
	if err := vm.start(ctx); err != nil {
		vm.abort()
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	return vm, nil
}

func (vm *VM) start(ctx context.Context) error {
	q, err := qemuConfig(ctx, &vm.cfg, vm.layout)
	if err != nil {
		return err
	}
	if vm.daemons, err = startVirtiofsds(&vm.cfg, vm.layout); err != nil {
		return err
	}
	if err := vm.launch(q); err != nil {
		return err
	}
	pid, err := readPidFile(vm.layout.pid)
	if err != nil {
		return fmt.Errorf("QEMU started but its pid file is unreadable: %w", err)
	}
	vm.PID = pid
	if vm.proc, err = watchProc(pid); err != nil || !cmdlineMentions(pid, vm.layout.dir) {
		return vm.bootError(fmt.Errorf("QEMU (pid %d) exited right after starting", pid))
	}
	if vm.cfg.Placed != nil {
		if err := vm.cfg.Placed(pid); err != nil {
			return fmt.Errorf("placing QEMU (pid %d): %w", pid, err)
		}
		if err := vm.Resume(ctx); err != nil {
			return vm.bootError(fmt.Errorf("starting the guest's vCPUs: %w", err))
		}
	}
	vm.recordCmdline()
	if vm.console, err = startConsole(ctx, vm.layout.consoleSock, vm.layout.console); err != nil {
		return err
	}
	return nil
}

// launch runs QEMU through govmm inside the VM's network namespace. With
// -daemonize, LaunchQemu returns once QEMU has set up the VM (sockets
// listening, pid file written) and detached.
func (vm *VM) launch(q qemu.Config) error {
	var stderr string
	err := inNetNS(vm.cfg.NetNSPath, func() error {
		var err error
		stderr, err = qemu.LaunchQemu(q, govmmLog{vm.cfg.Logf, vm.cfg.Debug})
		return err
	})
	if err != nil {
		msg := strings.TrimSpace(stderr)
		_ = os.WriteFile(vm.layout.log, []byte(msg+"\n"), 0o600)
		if msg != "" {
			return fmt.Errorf("QEMU failed to start: %w: %s", err, msg)
		}
		return fmt.Errorf("QEMU failed to start: %w", err)
	}
	return nil
}

// recordCmdline writes QEMU's command line to qemu.log: what ran is the
// first thing to look at when a guest misbehaves.
func (vm *VM) recordCmdline() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", vm.PID))
	if err != nil {
		return
	}
	line := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
	_ = os.WriteFile(vm.layout.log, []byte(line+"\n"), 0o600)
	if vm.cfg.Debug {
		vm.cfg.logf("QEMU pid %d: %s", vm.PID, line)
	}
}

// makeStateDir creates the VM's directory 0700. An existing empty
// directory is accepted (the caller may prepare it); a non-empty one may
// belong to another VM.
func makeStateDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return fmt.Errorf("create state directory parent: %w", err)
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			return fmt.Errorf("state directory %s: %w", dir, rerr)
		}
		if len(entries) > 0 {
			return fmt.Errorf("state directory %s is not empty: another VM uses it, or a dead one left it (run Cleanup on it)", dir)
		}
		return os.Chmod(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return nil
}

// abort undoes a failed Start.
func (vm *VM) abort() {
	if vm.proc != nil {
		_ = vm.proc.signal(unix.SIGKILL)
		waitDone(context.Background(), vm.proc.done, killTimeout)
	}
	// QEMU may have daemonized even though the launch failed (e.g. the
	// context ended while its parent waited).
	if pid, err := readPidFile(vm.layout.pid); err == nil {
		_ = killIfOurs(pid, mentions(vm.layout.dir), killTimeout)
	}
	stopDaemons(context.Background(), vm.daemons, 0)
	_ = os.RemoveAll(vm.layout.dir)
}

// Done is closed when QEMU has exited, for whatever reason.
func (vm *VM) Done() <-chan struct{} { return vm.proc.done }

// Stop ends the VM: QMP "quit", SIGKILL if QEMU is still there after a
// grace period, then virtiofsd, then the state directory. Calling it again
// (or after the guest powered off) is fine.
func (vm *VM) Stop(ctx context.Context) error {
	vm.stopMu.Lock()
	defer vm.stopMu.Unlock()
	if vm.stopped {
		return nil
	}
	if !vm.proc.exited() {
		qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
		// An error is not fatal: SIGKILL follows.
		qerr := vm.qmp(qctx, func(ctx context.Context, q *qemu.QMP) error { return q.ExecuteQuit(ctx) })
		cancel()
		if qerr != nil {
			vm.cfg.logf("%s: QMP quit failed, killing QEMU: %v", &vm.cfg, qerr)
		}
		if !waitDone(ctx, vm.proc.done, quitGrace) {
			if err := vm.proc.signal(unix.SIGKILL); err != nil {
				return err
			}
			// Bounded, and not cut short by ctx: stopping half way would
			// leave the state directory behind.
			if !waitDone(context.Background(), vm.proc.done, killTimeout) {
				return fmt.Errorf("%s: QEMU (pid %d) is still running %s after SIGKILL", &vm.cfg, vm.PID, killTimeout)
			}
		}
	}
	stopDaemons(ctx, vm.daemons, daemonGrace)
	if vm.console != nil {
		waitDone(ctx, vm.console, consoleDrainGrace)
	}
	if err := os.RemoveAll(vm.layout.dir); err != nil {
		return fmt.Errorf("%s: remove state directory: %w", &vm.cfg, err)
	}
	vm.stopped = true
	return nil
}

// Kill powers the VM off at once: SIGKILL to QEMU through its pidfd, whatever the guest does.
// Stop still has to be called to release the rest.
func (vm *VM) Kill() error {
	return vm.proc.signal(unix.SIGKILL)
}

// Pause stops the guest's vCPUs (QMP "stop").
func (vm *VM) Pause(ctx context.Context) error {
	return vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error { return q.ExecuteStop(ctx) })
}

// Resume restarts the guest's vCPUs (QMP "cont").
func (vm *VM) Resume(ctx context.Context) error {
	return vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error { return q.ExecuteCont(ctx) })
}

// Status returns QEMU's run state as QMP's query-status reports it:
// "running", "paused", "shutdown", ...
func (vm *VM) Status(ctx context.Context) (string, error) {
	var status string
	err := vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error {
		st, err := q.ExecuteQueryStatus(ctx)
		status = st.Status
		return err
	})
	return status, err
}

// qmp runs fn on a fresh QMP connection. QEMU's QMP socket serves one
// client at a time, so connections are not kept open between commands.
func (vm *VM) qmp(ctx context.Context, fn func(context.Context, *qemu.QMP) error) error {
	disconnected := make(chan struct{})
	q, _, err := qemu.QMPStart(ctx, vm.layout.qmp, qemu.QMPConfig{Logger: govmmLog{vm.cfg.Logf, vm.cfg.Debug}}, disconnected)
	if err != nil {
		return fmt.Errorf("connect to QMP socket %s: %w", vm.layout.qmp, err)
	}
	defer func() {
		q.Shutdown()
		<-disconnected
	}()
	if err := q.ExecuteQMPCapabilities(ctx); err != nil {
		return fmt.Errorf("QMP capabilities negotiation: %w", err)
	}
	if err := fn(ctx, q); err != nil {
		return fmt.Errorf("QMP: %w", err)
	}
	return nil
}

// Console returns the end of the guest's serial console (at most
// consoleTail bytes): kernel panics and agent errors land there.
func (vm *VM) Console() string { return readConsoleTail(vm.layout.console, consoleTail) }

// BootError wraps an error about a guest that did not come up (e.g. the
// agent never answered) with the end of its console log.
func (vm *VM) BootError(err error) error { return vm.bootError(err) }

func (vm *VM) bootError(err error) error {
	if vm.console != nil && vm.proc != nil && vm.proc.exited() {
		// QEMU is gone: let the drain write the console's last bytes.
		waitDone(context.Background(), vm.console, consoleDrainGrace)
	}
	tail := strings.TrimSpace(vm.Console())
	if tail == "" {
		return fmt.Errorf("%w (the guest console %s is empty: the kernel printed nothing; check hypervisor.kernel, or set runtime.debug for a verbose boot)", err, vm.layout.console)
	}
	return fmt.Errorf("%w; guest console (%s) ends with:\n%s", err, vm.layout.console, tail)
}

func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-n)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return string(b[:k])
}
