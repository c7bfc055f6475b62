package hypervisor

// The defects of the pinned govmm (github.com/kata-containers/govmm
// v0.0.0-20210909155007-1b60b536f3c7, unmaintained since it moved into the
// kata-containers repository) that this package works around, all in this
// file, each with a test in govmmfix_test.go that also shows the defect is
// still there: when a test says it is gone, drop the workaround.
//
// A known defect with no workaround: LaunchQemu always sets the child's
// credentials (uid, gid and groups from Config, 0 by default), which only
// root may do. The shim runs as root, so nothing is needed.

import (
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
func setSharedMemory(q *qemu.Config, mib int) {
	size := strconv.Itoa(mib) + "M"
	q.Memory = qemu.Memory{}
	q.Devices = append(q.Devices, rawArgs{
		"-m", size,
		"-object", "memory-backend-memfd,id=mem0,size=" + size + ",share=on",
		"-numa", "node,memdev=mem0",
	})
}
