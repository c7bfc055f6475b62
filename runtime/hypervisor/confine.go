package hypervisor

// How the processes a VM runs on the host (QEMU, virtiofsd) are confined.
// The guest controls what they parse (device registers, 9p and FUSE
// requests); a bug there must not be host root. Each process is started
// from a thread prepared for it and thrown away afterwards, so that what it
// inherits is exactly what is set here:
//
//   - its own mount namespace with slave propagation: nothing it mounts
//     reaches the host, while the host's unmounts (the container's share
//     binds at teardown) still reach it. For QEMU that namespace holds only
//     what it must open (confineroot.go): the system's programs and
//     libraries, its kernel, initrd and firmware read-only; the VM's state
//     directory and the 9p shares read-write; a few device nodes; a /proc
//     showing only itself; on a read-only tmpfs. Not even DAC_OVERRIDE reaches the rest of the host;
//   - a bounding set holding only the capabilities it needs, no inheritable
//     or ambient ones, and no_new_privs, so no exec can give any back;
//   - a real group id that is not root's (the effective one stays 0, so
//     files are still created as root): a process whose credentials do not
//     all match is neither dumpable nor ptrace-readable, so a sidecar that
//     joins the VM's pid namespace cannot read /proc/<pid>/root, /mem or
//     /fd of QEMU without CAP_SYS_PTRACE;
//   - for QEMU, fresh pid, ipc and uts namespaces: the pid Docker reports
//     for the container is QEMU's, and Docker builds --pid/--ipc
//     container:<id> from /proc/<pid>/ns. QEMU is pid 1 there; it starts no
//     process itself (-sandbox spawn=deny).
//
// QEMU then applies its own seccomp filter (-sandbox, see
// internal/qemusandbox).

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// qemuCaps are the capabilities QEMU keeps. Its 9p server
// (security_model=none) does the guest's file operations on a container
// rootfs owned by any user: open and search files of other owners
// (DAC_OVERRIDE), chown and chmod them (CHOWN, FOWNER, FSETID), create
// device nodes (MKNOD) and file capabilities (SETFCAP) as runc's
// containers may. Measured by the end-to-end suite; nothing else is
// needed: tap devices arrive as file descriptors over QMP, KVM is opened
// as its owner.
var qemuCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_MKNOD, unix.CAP_SETFCAP,
}

// virtiofsdCaps are those virtiofsd needs: the file operations of 9p above,
// acting with the guest's ids (SETUID, SETGID), and what it needs to set
// itself up: its namespace sandbox (unshare, mount, pivot_root:
// SYS_ADMIN), its file limit (SYS_RESOURCE) and dropping its own
// capabilities (SETPCAP). It drops all but its working set after setup.
var virtiofsdCaps = append(append([]uintptr(nil), qemuCaps...),
	unix.CAP_DAC_READ_SEARCH, unix.CAP_SETUID, unix.CAP_SETGID,
	unix.CAP_SYS_ADMIN, unix.CAP_SYS_RESOURCE, unix.CAP_SETPCAP)

// confinedGID is the real group id of confined processes ("nogroup").
const confinedGID = 65534

// spawnSpec is a process to start confined.
type spawnSpec struct {
	path string
	argv []string // argv[0] included
	// files become fds 0, 1, 2, 3, ... of the process.
	files []*os.File
	// netNS is the network namespace path; "" gives the process a new one.
	netNS string
	// keepCaps are left in the bounding set; every other capability goes.
	keepCaps []uintptr
	// cloneFlags are namespaces the process gets of its own, beyond the
	// mount namespace every confined process has.
	cloneFlags uintptr
	// root, if set, is the only part of the file system the process sees.
	root *rootSpec
	// nice, if not 0, is the process's scheduling priority.
	nice int
	// noHugePages turns transparent huge pages off for it (noHugePages).
	noHugePages bool
}

// spawn starts spec's process confined and returns it. The caller owns the
// process: it must reap it (watchProc) and release p.
func spawn(spec spawnSpec) (*os.Process, error) {
	type result struct {
		p   *os.Process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread's namespaces, capabilities and credentials are
		// changed for good: it stays locked, so the Go runtime ends it
		// with this goroutine instead of running other code on it.
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Never the main thread: it cannot end, and /proc/self
			// shows its namespaces (mountinfo, ns links). Holding it
			// locked, the nested call gets another thread.
			p, err := spawn(spec)
			runtime.UnlockOSThread()
			ch <- result{p, err}
			return
		}
		p, err := spawnOnThisThread(spec)
		ch <- result{p, err}
	}()
	r := <-ch
	return r.p, r.err
}

// spawnOnThisThread must run on a locked thread that is thrown away after.
func spawnOnThisThread(spec spawnSpec) (*os.Process, error) {
	if err := enterNetNS(spec.netNS); err != nil {
		return nil, err
	}
	if spec.nice != 0 {
		// This thread only (it is thrown away after): the child inherits it.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, spec.nice); err != nil {
			return nil, fmt.Errorf("setting the priority %d for %s: %w", spec.nice, spec.path, err)
		}
	}
	if err := confineThread(spec.keepCaps, spec.root); err != nil {
		return nil, fmt.Errorf("confine %s: %w", spec.path, err)
	}
	if spec.noHugePages {
		noHugePages()
	}
	p, err := os.StartProcess(spec.path, spec.argv, &os.ProcAttr{
		Files: spec.files,
		Sys: &syscall.SysProcAttr{
			// Its own session: a signal to the shim's process group
			// must not reach it.
			Setsid:     true,
			Cloneflags: spec.cloneFlags,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.path, err)
	}
	return p, nil
}

// noHugePages turns transparent huge pages off for this process and the processes it starts
// from now on (PR_SET_THP_DISABLE belongs to the whole process and is kept across fork and
// exec). QEMU asks for huge pages (MADV_HUGEPAGE) for its TCG translation buffer and every RAM
// block: on a host whose THP mode is "madvise" (most distributions' default) each 2 MiB range it
// touches at all then costs 2 MiB, and under emulation they buy little (guest memory is reached
// through QEMU's software TLB). Measured under TCG: 2-3.5 MiB less PSS per idle clone, 6 MiB per
// cold-booted VM, start time unchanged. Under KVM
// QEMU keeps them: there they back guest memory in the hardware's second-level page tables. A
// shim runs one VM (and the template its clones come from), all with one accelerator, so
// turning them off for the shim for good is what its QEMU needs; the shim's Go heap does not ask
// for huge pages. Failing to turn them off costs only that memory.
func noHugePages() {
	_ = unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
}

// confineThread gives the calling thread what its children must inherit.
// The thread keeps its effective capabilities (it still has to create the
// child's namespaces); exec gives the child, as root, exactly the bounding
// set.
func confineThread(keep []uintptr, root *rootSpec) error {
	last, err := lastCap() // while /proc is there
	if err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make the mount namespace a slave of the host's: %w", err)
	}
	if root != nil {
		if err := enterRoot(root); err != nil {
			return err
		}
	}
	if err := limitCaps(keep, last); err != nil {
		return err
	}
	// Raw system calls: the Go wrappers apply credentials to every
	// thread of the process, these must change only this one.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, confinedGID, 0, 0); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// limitCaps empties the bounding set but for keep, and clears the
// inheritable and ambient sets.
func limitCaps(keep []uintptr, last uintptr) error {
	kept := map[uintptr]bool{}
	for _, c := range keep {
		kept[c] = true
	}
	for c := uintptr(0); c <= last; c++ {
		if kept[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return nil
}

func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the number of capabilities: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	if err != nil {
		return 0, fmt.Errorf("/proc/sys/kernel/cap_last_cap: %w", err)
	}
	return uintptr(n), nil
}

// capMask is the capability set of caps as /proc/<pid>/status prints it.
func capMask(caps []uintptr) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}
