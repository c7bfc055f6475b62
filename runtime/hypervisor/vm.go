package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
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
	// launchTimeout bounds QEMU's own setup, before the guest boots;
	// generous: TCG hosts under load are slow.
	launchTimeout = 2 * time.Minute
	readyPoll     = 20 * time.Millisecond
	// maxQEMULog caps what QEMU's stderr adds to qemu.log.
	maxQEMULog = 1 << 20
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
	memory  dimms           // hot-plugged RAM (memory.go)
	console <-chan struct{} // closed when the console drain has ended (console.go)
	logDone chan struct{}   // closed when QEMU's stderr is closed

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
	q.SeccompSandbox = qemuSandbox(ctx, &vm.cfg).Arg()
	args, err := commandLine(q)
	if err != nil {
		return err
	}
	if vm.daemons, err = startVirtiofsds(ctx, &vm.cfg, vm.layout); err != nil {
		return err
	}
	p, err := vm.launch(args)
	if err != nil {
		return err
	}
	vm.PID = p.Pid
	// For Cleanup, should the shim die: QEMU outlives it, as in upstream Kata. Written first, so
	// no window leaves a QEMU (stopped by -S) that Cleanup cannot find.
	pidErr := os.WriteFile(vm.layout.pid, []byte(strconv.Itoa(vm.PID)+"\n"), 0o600)
	vm.proc, err = watchProc(p.Pid)
	_ = p.Release() // reaped through the pidfd (proc.go)
	if err != nil {
		_ = unix.Kill(vm.PID, unix.SIGKILL)
		return err
	}
	if pidErr != nil {
		return fmt.Errorf("write QEMU's pid file: %w", pidErr)
	}
	if err := vm.waitReady(ctx); err != nil {
		return err
	}
	// The console is drained before the vCPUs start (place), so the guest's first lines are kept.
	if vm.console, err = startConsole(ctx, vm.layout.consoleSock, vm.layout.console); err != nil {
		return err
	}
	return vm.place(ctx)
}

// place hands QEMU, still stopped (-S), to Config.Placed (e.g. the
// container's cgroup), loads a clone's state (template.go), then starts the
// guest's vCPUs: no guest code runs before the process is where it belongs.
func (vm *VM) place(ctx context.Context) error {
	if vm.cfg.Placed == nil && vm.cfg.incoming == nil {
		return nil
	}
	if vm.cfg.Placed != nil {
		if err := vm.cfg.Placed(vm.PID); err != nil {
			return fmt.Errorf("placing QEMU (pid %d): %w", vm.PID, err)
		}
	}
	if vm.cfg.incoming != nil {
		if err := vm.restore(ctx); err != nil {
			return err
		}
	}
	if err := vm.Resume(ctx); err != nil {
		return vm.bootError(fmt.Errorf("starting the guest's vCPUs: %w", err))
	}
	return nil
}

// launch starts QEMU confined (confine.go) inside the VM's network
// namespace. It is not daemonized: it is pid 1 of its own pid namespace,
// and -sandbox spawn=deny forbids the fork -daemonize needs. Its command
// line, then its stderr, go to qemu.log: what ran is the first thing to
// look at when a guest misbehaves.
func (vm *VM) launch(args []string) (*os.Process, error) {
	logFile, err := os.OpenFile(vm.layout.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("QEMU log: %w", err)
	}
	line := vm.cfg.QEMUPath + " " + strings.Join(args, " ")
	if _, err := logFile.WriteString(line + "\n"); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("QEMU log: %w", err)
	}
	// QEMU's stderr reaches the log through a pipe, capped: the guest
	// can make QEMU print. QEMU ignores SIGPIPE, so a shim that dies
	// only ends the log.
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	defer w.Close()
	vm.logDone = make(chan struct{})
	go func() {
		defer close(vm.logDone)
		defer logFile.Close()
		defer r.Close()
		_, _ = io.Copy(logFile, io.LimitReader(r, maxQEMULog))
		_, _ = io.Copy(io.Discard, r)
	}()
	if vm.cfg.Debug {
		vm.cfg.logf("QEMU: %s", line)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	if err := os.Mkdir(vm.layout.root, 0o700); err != nil {
		return nil, fmt.Errorf("QEMU's root directory: %w", err)
	}
	p, err := spawn(spawnSpec{
		root:       qemuRoot(&vm.cfg, vm.layout),
		path:       vm.cfg.QEMUPath,
		argv:       append([]string{vm.cfg.QEMUPath}, args...),
		files:      []*os.File{devNull, w, w},
		netNS:      vm.cfg.NetNSPath,
		keepCaps:   qemuCaps,
		cloneFlags: unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		nice:       vm.cfg.Nice,
		// Under TCG huge pages buy little and cost memory (noHugePages); under KVM they back
		// guest memory.
		noHugePages: vm.cfg.Accelerator == AccelTCG,
	})
	if err != nil {
		return nil, fmt.Errorf("QEMU failed to start: %w", err)
	}
	return p, nil
}

// waitReady returns once QEMU answers on QMP: its sockets listen and the
// VM is set up. A QEMU that exits first failed; its stderr says why.
func (vm *VM) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, qmpTimeout)
		_, err := vm.Status(qctx)
		qcancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(readyPoll)
		select {
		case <-vm.proc.done:
			t.Stop()
			waitDone(ctx, vm.logDone, time.Second) // the last of stderr
			msg := strings.TrimSpace(readTail(vm.layout.log, consoleTail))
			return fmt.Errorf("QEMU (pid %d) exited right after starting; %s says:\n%s", vm.PID, vm.layout.log, msg)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("QEMU (pid %d) did not answer on QMP within %s: %w", vm.PID, launchTimeout, err)
		case <-t.C:
		}
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
	return vm.stop(ctx, true)
}

// StopSynced is Stop for a VM whose guest has written out its file systems (the agent's
// shutdown, or its report of the container's exit): without a disk image QEMU holds nothing that
// still needs writing (what it wrote to a share is the host's already), so it is killed at once
// rather than asked to quit, which saves the QMP round trips on every container's removal. A VM
// with disks quits, so that QEMU flushes its image caches.
func (vm *VM) StopSynced(ctx context.Context) error {
	return vm.stop(ctx, vm.HasDisks())
}

// HasDisks reports whether QEMU holds disk images (Config.Blocks).
func (vm *VM) HasDisks() bool { return len(vm.cfg.Blocks) > 0 }

func (vm *VM) stop(ctx context.Context, quit bool) error {
	vm.stopMu.Lock()
	defer vm.stopMu.Unlock()
	if vm.stopped {
		return nil
	}
	if !vm.proc.exited() {
		if !quit || !vm.quit(ctx) {
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

// quit asks QEMU to quit through QMP and reports whether it exited within quitGrace.
func (vm *VM) quit(ctx context.Context) bool {
	qctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	// An error is not fatal: the caller kills QEMU.
	err := vm.qmp(qctx, func(ctx context.Context, q *qemu.QMP) error { return q.ExecuteQuit(ctx) })
	cancel()
	if err != nil {
		vm.cfg.logf("%s: QMP quit failed, killing QEMU: %v", &vm.cfg, err)
	}
	return waitDone(ctx, vm.proc.done, quitGrace)
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
	// QEMU can write the state directory: the log may have been replaced by a link to a host file
	// or a FIFO. Only a regular file at the path itself is read, and opening never blocks.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	off := max(0, fi.Size()-n)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return string(b[:k])
}
