package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// NSExecutor is the real Executor: it mounts shares and runs every container
// process through the agent binary itself (containerinit), in namespaces.
type NSExecutor struct {
	log    *Logger
	reaper *Reaper
	opts   ExecutorOptions

	mu      sync.Mutex
	mounted []string // guest paths of mounted shares, in mount order
	blocks  []string // those of them that are disks (blockshare.go)
	devices *devicesCgroup
	res     containerCgroups
	// spare is a containerinit started ahead (spareinit.go); mountChanges counts the changes of
	// the mount table, which make it unfit.
	spare        *spareInit
	mountChanges uint64
}

// ExecutorOptions tune an NSExecutor; the zero value is for the guest.
type ExecutorOptions struct {
	// SetGuestHostname gives the VM itself the container's hostname at
	// create. Only PID 1 of a guest may want that.
	SetGuestHostname bool
	// Exe is the binary re-executed with containerinit.Arg; it must call
	// containerinit.Main then. Default /proc/self/exe.
	Exe string
	// ProcDir is where procfs is mounted. Default /proc.
	ProcDir string
	// DeviceCgroup confines each container's device access with a cgroup
	// v1 devices controller, with the spec's rules as runc applies them.
	// Only for a guest: the controller is the whole kernel's.
	DeviceCgroup bool
	// ResourceCgroup gives each container a cgroup v2 of its own with the
	// spec's limits, and the container a cgroup namespace rooted there.
	// Only for a guest, as DeviceCgroup.
	ResourceCgroup bool
	// CgroupV1 lays the containers' cgroups out in cgroup v1 hierarchies
	// (a host on cgroup v1), cgroup v2 otherwise.
	CgroupV1 bool
}

// NewExecutor returns an executor whose children are reaped by reaper.
func NewExecutor(log *Logger, reaper *Reaper, opts ExecutorOptions) *NSExecutor {
	if opts.Exe == "" {
		opts.Exe = "/proc/self/exe"
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	return &NSExecutor{log: log, reaper: reaper, opts: opts}
}

// Share mount options; cache=mmap keeps mmap working with a cheap cache.
const (
	ninePOptions      = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"
	shareMountTimeout = 5 * time.Second
	// setupTimeout bounds a container process's setup (mounts, user). It is below the host's
	// deadline for the create (agentproto.OpTimeout), so that the host gets this agent's account
	// of a stuck setup rather than its own timeout.
	setupTimeout = 90 * time.Second
	// execWait bounds how long Start waits for the program's execve (a PATH search over a slow
	// share); the process counts as started either way.
	execWait = 10 * time.Second
)

// MountShare mounts s at its guest path, retrying while the device is still
// being probed right after boot.
func (e *NSExecutor) MountShare(ctx context.Context, s agentproto.Share) error {
	if s.Type == agentproto.ShareBlock {
		return e.mountBlockShare(ctx, s)
	}
	if err := os.MkdirAll(s.GuestPath, 0o755); err != nil {
		return fmt.Errorf("create share mount point %s: %w", s.GuestPath, err)
	}
	at := s.GuestPath
	if s.Subdir != "" {
		at = filepath.Join(agentproto.ShareRootsDir, s.Tag)
		if err := os.MkdirAll(at, 0o700); err != nil {
			return fmt.Errorf("create share mount point %s: %w", at, err)
		}
	}
	if err := mountFS(ctx, s, at); err != nil {
		return err
	}
	e.mu.Lock()
	e.mounted = append(e.mounted, at)
	e.mountChanges++
	e.mu.Unlock()
	if s.Subdir != "" {
		sub := filepath.Join(at, s.Subdir)
		if err := unix.Mount(sub, s.GuestPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s of share %q at %s: %w", s.Subdir, s.Tag, s.GuestPath, err)
		}
		e.mu.Lock()
		e.mounted = append(e.mounted, s.GuestPath)
		e.mountChanges++
		e.mu.Unlock()
	}
	e.log.Debugf("mounted %s share %q at %s", s.Type, s.Tag, s.GuestPath)
	return nil
}

// mountFS mounts a 9p or virtio-fs share at dir, waiting for its device to appear.
func mountFS(ctx context.Context, s agentproto.Share, dir string) error {
	fstype, data := "9p", ninePOptions
	if s.Type == agentproto.ShareVirtioFS {
		fstype, data = "virtiofs", ""
	}
	deadline := time.Now().Add(shareMountTimeout)
	for {
		err := unix.Mount(s.Tag, dir, fstype, unix.MS_NODEV, data)
		if err == nil {
			return nil
		}
		retry := errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("mount %s share %q at %s: %w (is the device on QEMU's command line with this tag, and the %s module in the image?)", s.Type, s.Tag, dir, err, fstype)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CreateInit starts containerinit as the first process of new mount, pid,
// uts and ipc namespaces. The network namespace is the VM's own: the VM is
// the container's network sandbox.
func (e *NSExecutor) CreateInit(ctx context.Context, id string, spec *specs.Spec, seccomp *agentproto.Seccomp) (Process, error) {
	if e.opts.SetGuestHostname && spec.Hostname != "" {
		// The VM carries the container's name too (visible in its logs).
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			e.log.Errorf("set the guest hostname to %q: %v", spec.Hostname, err)
		}
	}
	cfg := &containerinit.Config{Mode: containerinit.ModeInit, Spec: spec, Process: spec.Process}
	if err := e.seccompFilter(id, cfg, seccomp); err != nil {
		return nil, err
	}
	var confine func(pid int) error
	var dc *devicesCgroup
	if e.opts.DeviceCgroup {
		var rules []specs.LinuxDeviceCgroup
		if spec.Linux != nil && spec.Linux.Resources != nil {
			rules = spec.Linux.Resources.Devices
		}
		writes, notes, err := containerinit.DeviceCgroupRules(rules)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			e.log.Debugf("container %s: %s", id, n)
		}
		if dc, err = e.devicesCgroup(); err != nil {
			return nil, err
		}
		confine = func(pid int) error { return dc.create(id, writes, pid) }
	}
	rc, err := e.containerCgroup(id, spec, cfg, &confine)
	if err != nil {
		return nil, err
	}
	p, err := e.spawn(ctx, cfg, 0, confine)
	if err != nil {
		if dc != nil {
			_ = dc.remove(id) // a failed create leaves no rules behind for the id
		}
		if rc != nil {
			_ = rc.remove(id)
		}
		return nil, err
	}
	if rc != nil {
		p.resCgroup = id
		go func() {
			<-p.exited
			if err := rc.remove(id); err != nil {
				e.log.Debugf("remove the cgroup of %s: %v", id, err)
			}
		}()
	}
	if dc != nil {
		p.cgroup = id
		go func() {
			<-p.exited
			// Its exec'd processes die with the pid namespace; an empty
			// cgroup left over in a VM that powers off soon is harmless.
			if err := dc.remove(id); err != nil {
				e.log.Debugf("remove the devices cgroup of %s: %v", id, err)
			}
		}()
	}
	return p, nil
}

// seccompFilter gives cfg the container's seccomp filter: the host's compiled one, else the
// spec's profile compiled here (and left out of the spec the child decodes).
func (e *NSExecutor) seccompFilter(id string, cfg *containerinit.Config, compiled *agentproto.Seccomp) error {
	if compiled != nil {
		f := &containerinit.Filter{Program: compiled.Program, Flags: uintptr(compiled.Flags)}
		if err := f.Check(); err != nil {
			return fmt.Errorf("container %s: the host's seccomp filter: %w", id, err)
		}
		cfg.Seccomp = f
		return nil
	}
	spec := cfg.Spec
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		return nil
	}
	f, unknown, err := containerinit.CompileSeccomp(spec.Linux.Seccomp)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if len(unknown) > 0 {
		e.log.Infof("container %s: seccomp: %d syscalls of the profile are unknown to this agent and were left out (%v)", id, len(unknown), unknown)
	}
	cfg.Spec, cfg.Seccomp = containerinit.WithoutSeccomp(spec), f
	return nil
}

// CreateExec starts containerinit in init's pid, uts and ipc namespaces; it
// enters the container's root through /proc/<pid>/root. (Joining the mount
// namespace with setns is impossible from a multi-threaded Go process.)
func (e *NSExecutor) CreateExec(ctx context.Context, init Process, p *specs.Process) (Process, error) {
	ip, ok := init.(*nsProcess)
	if !ok {
		return nil, errors.New("exec: init process is not from this executor")
	}
	// An exec'd process is confined like the container's first one.
	cfg := &containerinit.Config{Mode: containerinit.ModeExec, Process: p, Root: fmt.Sprintf("%s/%d/root", e.opts.ProcDir, ip.pid),
		Seccomp: ip.seccomp}
	var confine func(pid int) error
	if ip.cgroup != "" {
		confine = func(pid int) error { return e.devices.join(ip.cgroup, pid) }
	}
	e.joinResourceCgroup(ip.resCgroup, &confine)
	return e.spawn(ctx, cfg, ip.pid, confine)
}

// devicesCgroup opens the guest's devices controller on first use.
func (e *NSExecutor) devicesCgroup() (*devicesCgroup, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.devices == nil {
		dc, err := openDevicesCgroup()
		if err != nil {
			return nil, err
		}
		e.devices = dc
	}
	return e.devices, nil
}

// Stats reports guest-wide memory and CPU usage.
func (e *NSExecutor) Stats() (agentproto.Stats, error) {
	return guestStats(e.opts.ProcDir)
}

// Shutdown unmounts the shares (lazily: a stuck 9p server must not block
// the power-off) and syncs.
func (e *NSExecutor) Shutdown(ctx context.Context) error {
	e.dropSpare()
	e.unmountBlocks()
	e.mu.Lock()
	mounted := append([]string(nil), e.mounted...)
	e.mounted = nil
	e.mountChanges++
	e.mu.Unlock()
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounted[i], unix.MNT_DETACH); err != nil {
			e.log.Errorf("unmount share %s: %v", mounted[i], err)
		}
	}
	unix.Sync()
	return nil
}

// SyncFS writes the guest's file systems out.
func (e *NSExecutor) SyncFS() error {
	unix.Sync()
	return nil
}

// spawn starts containerinit and hands it cfg. confine, if set, runs on the
// new pid before the child gets its config (it waits for it, doing nothing).
// A container's first process (joinPid 0) is the spare init when one fits.
func (e *NSExecutor) spawn(ctx context.Context, cfg *containerinit.Config, joinPid int, confine func(pid int) error) (*nsProcess, error) {
	var s *startedInit
	if joinPid == 0 {
		s = e.takeSpare(cfg.Process.Terminal)
	}
	if s == nil {
		var err error
		if s, err = e.startInit(cfg.Process.Terminal, joinPid); err != nil {
			return nil, err
		}
	}
	return e.setUp(ctx, s, cfg, joinPid == 0, confine)
}

// startedInit is containerinit started, waiting for its config on the setup socket.
type startedInit struct {
	pid  int
	exit <-chan int // from the reaper
	sync *os.File   // the agent's end of the setup socket
	sio  *procStdio
	gone bool // its exit was taken from exit: the pid is no longer its own
}

// startInit starts containerinit in new mount, pid, uts and ipc namespaces, or in those of
// joinPid (an exec). terminal: its stdio are /dev/null, it opens a pty itself.
func (e *NSExecutor) startInit(terminal bool, joinPid int) (*startedInit, error) {
	sio, err := newStdio(terminal)
	if err != nil {
		return nil, err
	}
	defer sio.closeChild()
	parent, child, err := syncPair()
	if err != nil {
		sio.closeParent()
		return nil, err
	}
	// A new session: the process's own job control, and with a terminal
	// the child makes its pty the controlling terminal of this session.
	sys := &syscall.SysProcAttr{Setsid: true}
	if joinPid == 0 {
		sys.Cloneflags = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{sio.child[0], sio.child[1], sio.child[2], child},
		Sys:   sys,
	}
	args := []string{"kata-agent", containerinit.Arg}
	pid, exit, err := e.reaper.Start(func() (int, error) {
		if joinPid == 0 {
			return startProcess(e.opts.Exe, args, attr)
		}
		return startInNamespaces(e.opts.ProcDir, joinPid, e.opts.Exe, args, attr)
	})
	child.Close()
	if err != nil {
		parent.Close()
		sio.closeParent()
		return nil, fmt.Errorf("start the container process: %w", err)
	}
	return &startedInit{pid: pid, exit: exit, sync: parent, sio: sio}, nil
}

// reaped reports whether the process has exited and was reaped, without waiting.
func (s *startedInit) reaped() bool {
	if !s.gone {
		select {
		case <-s.exit:
			s.gone = true
		default:
		}
	}
	return s.gone
}

// discard kills the process (its pid is its own until the reaper took its exit) and closes the
// agent's ends of its sockets and pipes.
func (s *startedInit) discard() {
	if !s.reaped() {
		_ = unix.Kill(s.pid, unix.SIGKILL)
	}
	s.sync.Close()
	s.sio.closeParent()
}

// setUp confines a started containerinit (confine, if set, runs on its pid before it gets its
// config), hands it cfg and waits for its setup report. On error the process is gone.
func (e *NSExecutor) setUp(ctx context.Context, s *startedInit, cfg *containerinit.Config, nsInit bool, confine func(pid int) error) (*nsProcess, error) {
	p := &nsProcess{pid: s.pid, sync: s.sync, procDir: e.opts.ProcDir, exited: make(chan struct{}), seccomp: cfg.Seccomp,
		nsInit: nsInit}
	go p.collect(s.exit)
	// A setup that hangs (a stuck share) must not hold the request forever.
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	var err error
	if confine != nil {
		err = confine(s.pid)
	}
	if err == nil {
		err = p.handshake(ctx, cfg, s.sio, e.log)
	}
	if err != nil {
		unix.Kill(s.pid, unix.SIGKILL)
		<-p.exited
		s.sync.Close()
		s.sio.closeParent()
		return nil, err
	}
	p.stdio, p.pty = s.sio.parent, s.sio.pty
	return p, nil
}

func startProcess(exe string, args []string, attr *os.ProcAttr) (int, error) {
	p, err := os.StartProcess(exe, args, attr)
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release() // the Reaper waits, never os.Process
	return pid, nil
}

// startInNamespaces forks from a thread that joined the namespaces of pid.
// The thread is never unlocked, so the runtime discards it afterwards.
func startInNamespaces(procDir string, pid int, exe string, args []string, attr *os.ProcAttr) (int, error) {
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		for _, ns := range []struct {
			name string
			flag int
		}{{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"pid", unix.CLONE_NEWPID}, {"cgroup", unix.CLONE_NEWCGROUP}} {
			if err := setns(fmt.Sprintf("%s/%d/ns/%s", procDir, pid, ns.name), ns.flag); err != nil {
				ch <- result{err: err}
				return
			}
		}
		p, err := startProcess(exe, args, attr)
		ch <- result{p, err}
	}()
	r := <-ch
	return r.pid, r.err
}

func setns(path string, flag int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s (has the container exited?): %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, flag); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

// syncPair returns the agent's (non-blocking, so deadlines work) and the
// child's end of the setup socket.
func syncPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create the setup socket: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("create the setup socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// nsProcess is a process created by NSExecutor.
type nsProcess struct {
	pid     int
	stdio   Stdio
	sync    *os.File
	pty     *os.File
	procDir string
	seccomp *containerinit.Filter // the container's filter, for its exec'd processes
	cgroup  string                // the container's devices cgroup, for its exec'd processes
	// resCgroup is the container's cgroup v2 (its limits), for its exec'd processes and updates.
	resCgroup string
	exited    chan struct{}
	status    int

	nsInit    bool      // the init of its own pid namespace (the container's first process)
	startedAt time.Time // when Start returned
}

func (p *nsProcess) collect(exit <-chan int) {
	p.status = <-exit
	close(p.exited)
}

// handshake sends the config and waits for the child's setup report (and,
// with a terminal, the pty master that comes with it).
func (p *nsProcess) handshake(ctx context.Context, cfg *containerinit.Config, sio *procStdio, log *Logger) error {
	stop := context.AfterFunc(ctx, func() { p.sync.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode the container config: %w", err)
	}
	if _, err := p.sync.Write(append(b, '\n')); err != nil {
		return p.setupError(fmt.Errorf("send the config to the container process: %w", err))
	}
	line, fds, err := readStatus(p.sync)
	if err != nil {
		return p.setupError(fmt.Errorf("read the container process's setup report: %w", err))
	}
	var st containerinit.Status
	if err := json.Unmarshal(line, &st); err != nil {
		closeFds(fds)
		return fmt.Errorf("decode the container process's setup report: %w", err)
	}
	for _, w := range st.Warnings {
		log.Infof("pid %d: %s", p.pid, w)
	}
	if st.Error != "" {
		closeFds(fds)
		return errors.New(st.Error)
	}
	if !cfg.Process.Terminal {
		closeFds(fds)
		return nil
	}
	if len(fds) != 1 {
		closeFds(fds)
		return fmt.Errorf("the container process sent %d descriptors for its terminal, want 1", len(fds))
	}
	return sio.usePty(fds[0], cfg.Process.ConsoleSize)
}

// readStatus reads the child's status line and the descriptors sent with it.
func readStatus(f *os.File) ([]byte, []int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var line []byte
	var fds []int
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for !bytes.Contains(line, []byte("\n")) {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			closeFds(fds)
			return nil, nil, err
		}
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for i := range msgs {
				if rights, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		line = append(line, buf[:n]...)
	}
	return line, fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// setupError explains a broken handshake by the child's exit, if it exited, or else by where it
// waits, if it ran out of time.
func (p *nsProcess) setupError(err error) error {
	select {
	case <-p.exited:
		return fmt.Errorf("the container process exited with status %d during setup: %w", p.status, err)
	case <-time.After(100 * time.Millisecond):
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Say where it is stuck: the host sees only this error.
		return fmt.Errorf("the container process did not finish its setup in time (%s): %w", DescribeStuck(p.procDir, p.pid), err)
	}
	return err
}

func (p *nsProcess) Pid() int                { return p.pid }
func (p *nsProcess) Stdio() Stdio            { return p.stdio }
func (p *nsProcess) Exited() <-chan struct{} { return p.exited }
func (p *nsProcess) ExitStatus() int         { return p.status }

func (p *nsProcess) Start() error {
	defer p.sync.Close()
	if _, err := p.sync.Write([]byte{containerinit.StartByte}); err != nil {
		return fmt.Errorf("the container process is gone before start: %w", err)
	}
	p.awaitExec()
	p.startedAt = time.Now()
	return nil
}

// awaitExec waits, within execWait, until the child has replaced itself with the user's program
// (its end of the setup socket is close-on-exec) or has exited, as runc start does. A signal sent
// right after Start then reaches the program rather than the setup code: `docker kill -s TERM`
// of a container whose init is pid 1 of its namespace would otherwise be dropped, and a health
// check's timeout, counted from Start, would include the exec.
func (p *nsProcess) awaitExec() {
	p.sync.SetReadDeadline(time.Now().Add(execWait))
	_, _ = io.Copy(io.Discard, p.sync)
}

func (p *nsProcess) Signal(sig syscall.Signal) error {
	p.awaitHandler(sig)
	if err := unix.Kill(p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal %d to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

func (p *nsProcess) SignalAll(sig syscall.Signal) error {
	pids, err := p.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %d to pid %d: %w", sig, pid, err)
		}
	}
	return nil
}

func (p *nsProcess) Pids() ([]int, error) {
	return PidsInNamespace(p.procDir, p.pid)
}

func (p *nsProcess) Resize(width, height uint32) error {
	if p.pty == nil {
		return errors.New("the process has no terminal")
	}
	return setWinsize(p.pty, width, height)
}
