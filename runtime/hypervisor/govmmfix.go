package hypervisor

// The defects of the pinned govmm (github.com/kata-containers/govmm
// v0.0.0-20210909155007-1b60b536f3c7, unmaintained since it moved into the
// kata-containers repository) that this package works around, all in this
// file, each with a test in govmmfix_test.go that also shows the defect is
// still there: when a test says it is gone, drop the workaround.
//
// LaunchQemu is not used to start QEMU (see commandLine): it always sets
// the child's credentials and ties the process to a context.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/kata-containers/govmm/qemu"
)

// rawArgs is a qemu.Device carrying arguments govmm cannot express. QEMU is
// still launched by govmm, with these among its device arguments.
type rawArgs []string

func (r rawArgs) Valid() bool                        { return len(r) > 0 }
func (r rawArgs) QemuParams(_ *qemu.Config) []string { return append([]string(nil), r...) }

// noRealtimeArg works around "-realtime mlock=off": with Knobs.Mlock unset
// govmm always emits it, and QEMU 7.2 removed -realtime and refuses to
// start. With Mlock set and Realtime unset govmm emits nothing, which is
// QEMU's default: guest memory is not locked.
func noRealtimeArg(k *qemu.Knobs) {
	k.Mlock = true
	k.Realtime = false
}

// setSharedMemory gives the VM its RAM in a shared memfd bound to its only
// NUMA node, so that vhost-user daemons (virtiofsd) can map it. govmm's
// Memory has no memfd backend with share=on, so the arguments are raw, and
// Memory.Size stays empty: otherwise govmm adds "-m" and a backend of its
// own that conflict with these.
func setSharedMemory(q *qemu.Config, mem qemu.Memory) {
	size := mem.Size
	m := size
	if mem.Slots > 0 && mem.MaxMem != "" {
		m += ",slots=" + strconv.Itoa(int(mem.Slots)) + ",maxmem=" + mem.MaxMem
	}
	q.Memory = qemu.Memory{}
	q.Devices = append(q.Devices, rawArgs{
		"-m", m,
		"-object", "memory-backend-memfd,id=mem0,size=" + size + ",share=on",
		"-numa", "node,memdev=mem0",
	})
}

// commandLine returns the arguments govmm builds for q, without running
// anything. govmm builds them only inside LaunchQemu, which then runs QEMU
// and waits for it, tied to a context: a VM that is QEMU started by this
// package in its own namespaces cannot be launched that way. LaunchQemu
// logs the arguments before it starts the process; with a context that is
// already cancelled, exec refuses to start it.
func commandLine(q qemu.Config) ([]string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Ctx = ctx
	var rec argRecorder
	_, err := qemu.LaunchQemu(q, &rec)
	if rec.args == nil {
		return nil, fmt.Errorf("govmm did not produce a QEMU command line: %w", err)
	}
	if !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("govmm: unexpected result of a cancelled launch: %v", err)
	}
	return rec.args, nil
}

// argRecorder keeps the arguments of govmm's "launching" log line.
type argRecorder struct{ args []string }

func (r *argRecorder) V(int32) bool { return false }
func (r *argRecorder) Infof(format string, v ...any) {
	if format == "launching %s with: %v" && len(v) == 2 {
		if a, ok := v[1].([]string); ok {
			r.args = append([]string(nil), a...)
		}
	}
}
func (r *argRecorder) Warningf(string, ...any) {}
func (r *argRecorder) Errorf(string, ...any)   {}
