package hypervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Adopt takes over a running VM that another process started, with cfg as it was started (a
// pooled clone, runtime/sandbox/pool.go: the process that restored it has exited). cfg.StateDir
// holds its pid file and sockets. QEMU is not this process's child: it is held through a pidfd,
// like any VM, and Stop, Kill and the QMP calls work as on a VM Start returned. QEMU's stderr
// went to a process that is gone, so qemu.log ends where the adoption starts; the guest console
// is drained again, into a fresh console.log. An error leaves QEMU running: the caller decides
// (hypervisor.Cleanup stops it).
func Adopt(ctx context.Context, cfg Config) (*VM, error) {
	l := newLayout(cfg.StateDir)
	pid, err := readPidFile(l.pid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	p, err := openProc(pid)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	// Checked once the pidfd holds the process: a pid reused since the pid file was written is
	// not taken for QEMU, nor watched.
	if !cmdlineMentions(pid, l.dir) {
		p.close()
		return nil, fmt.Errorf("%s: pid %d (from %s) is not the QEMU of %s", &cfg, pid, l.pid, l.dir)
	}
	go p.watch()
	logDone := make(chan struct{})
	close(logDone)
	vm := &VM{
		PID: pid, AgentSocket: l.agent, QMPSocket: l.qmp, StateDir: l.dir, ConsolePath: l.console,
		cfg: cfg, layout: l, proc: p, logDone: logDone,
	}
	if vm.console, err = startConsole(ctx, l.consoleSock, l.console); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	return vm, nil
}

// SetNice gives every thread of QEMU the scheduling priority nice (-20 to 19): a pooled clone
// waits at a low one, and gets the normal one, 0, when a container takes it. Threads QEMU starts
// later inherit it from the thread that starts them.
func (vm *VM) SetNice(nice int) error {
	tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(vm.PID), "task"))
	if err != nil {
		return fmt.Errorf("%s: listing QEMU's threads: %w", &vm.cfg, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may end meanwhile: ESRCH is not an error.
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && err != unix.ESRCH {
			return fmt.Errorf("%s: setting the priority of QEMU's thread %d: %w", &vm.cfg, tid, err)
		}
	}
	return nil
}

// NICSlot returns the slot of a NIC AddNIC plugged, -1 for none: with AdoptNIC, another process
// that adopts the VM learns of it.
func (vm *VM) NICSlot(id string) int { return vm.nics.find(id) }

// AdoptNIC records a NIC that the process which started an adopted VM plugged into slot (NICSlot
// there), so that RemoveNIC can unplug it and AddNIC does not reuse the slot.
func (vm *VM) AdoptNIC(id string, slot int) error {
	if !nicIDPattern.MatchString(id) || slot < 0 || slot >= NICSlots {
		return fmt.Errorf("%s: NIC %q in slot %d: not a NIC this runtime plugs", &vm.cfg, id, slot)
	}
	vm.nics.mu.Lock()
	defer vm.nics.mu.Unlock()
	if have := vm.nics.taken[slot]; have != "" {
		return fmt.Errorf("%s: slot %d already holds NIC %s", &vm.cfg, slot, have)
	}
	vm.nics.taken[slot] = id
	return nil
}
