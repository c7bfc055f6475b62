// Package containerinit is the part of the guest agent that runs inside a
// container's namespaces, between clone and the user's program: the agent
// re-executes itself with Arg, sends a Config over fd 3, and this code sets
// up the root filesystem, the credentials and the limits, reports, waits for
// the start byte, and executes the program (like runc's "init").
package containerinit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Arg is the hidden first argument that selects this code in the agent
// binary.
const Arg = "__kata_agent_container_init__"

// SyncFd is the child's end of the agent's socket pair.
const SyncFd = 3

// StartByte releases a prepared process.
const StartByte = 'S'

// Mode says what kind of process is prepared.
type Mode string

const (
	// ModeInit prepares a container's first process: it is the first
	// process of fresh mount, pid, uts and ipc namespaces.
	ModeInit Mode = "init"
	// ModeExec prepares another process: the agent already placed it in the
	// container's pid, uts and ipc namespaces, and it enters the container's
	// root through Root.
	ModeExec Mode = "exec"
)

// Config is what the agent sends to the child, as one JSON line.
type Config struct {
	Mode    Mode           `json:"mode"`
	Spec    *specs.Spec    `json:"spec,omitempty"` // ModeInit: rootfs, mounts, hostname
	Process *specs.Process `json:"process"`        // the program and its credentials
	Root    string         `json:"root,omitempty"` // ModeExec: /proc/<init pid>/root
	// Seccomp is the container's filter, applied to every process of the container (init and
	// exec) as the last step before execve. The spec's own profile is not read here: the shim or
	// the agent compiles it (CompileSeccomp).
	Seccomp *Filter `json:"seccomp,omitempty"`
	// Cgroup says the agent placed the process in a cgroup of the
	// container's own: the spec's cgroup namespace and mounts show it.
	Cgroup bool `json:"cgroup,omitempty"`
	// CgroupV1 lists the cgroup v1 hierarchies to show the container, by
	// mount options ("cpu,cpuacct", "memory"); empty: cgroup v2.
	CgroupV1 []string `json:"cgroupV1,omitempty"`
}

// Status is the child's one JSON line answer after setup. With a terminal,
// the pty master travels with it as an SCM_RIGHTS descriptor.
type Status struct {
	Error    string   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Exit codes of the child, as runc and shells use them.
const (
	exitSetupFailed  = 1
	exitCannotExec   = 126
	exitNotFound     = 127
	maxConfigMessage = 4 << 20
)

// Main runs the child and never returns.
func Main() {
	// Capabilities and no_new_privs belong to a thread, and execve keeps
	// those of the calling thread: do everything on this one.
	runtime.LockOSThread()
	var st unix.Stat_t
	if err := unix.Fstat(SyncFd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		fmt.Fprintln(os.Stderr, "kata-agent: "+Arg+" is internal to the agent and needs its socket on fd 3")
		os.Exit(2)
	}
	os.Exit(run(os.NewFile(SyncFd, "sync")))
}

func run(sync *os.File) int {
	unix.CloseOnExec(SyncFd)
	br := bufio.NewReaderSize(sync, 64<<10)
	var cfg Config
	w := &warnings{}
	var master *os.File
	var late *seccompFilter
	err := readConfig(br, &cfg)
	if err == nil {
		master, late, err = prepare(&cfg, w)
	}
	st := Status{Warnings: w.list}
	if err != nil {
		st.Error = err.Error()
	}
	werr := writeStatus(SyncFd, st, master)
	if master != nil {
		master.Close() // the agent has its own descriptor now
	}
	if werr != nil || err != nil {
		return exitSetupFailed
	}
	b, err := br.ReadByte()
	if err != nil || b != StartByte {
		return exitSetupFailed // the agent gave up on this process
	}
	var beforeExec func() error
	if late != nil {
		beforeExec = late.load
	}
	// The setup socket stays open until execve closes it (close-on-exec): the agent's Start
	// returns at that moment, as runc start does.
	code := execProcess(cfg.Process, os.Stderr, beforeExec)
	sync.Close()
	return code
}

func readConfig(br *bufio.Reader, cfg *Config) error {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		var rest []byte
		rest, err = readRest(br, line)
		line = rest
	}
	if err != nil {
		return fmt.Errorf("read config from the agent: %w", err)
	}
	if err := json.Unmarshal(line, cfg); err != nil {
		return fmt.Errorf("decode config from the agent: %w", err)
	}
	if cfg.Process == nil || len(cfg.Process.Args) == 0 {
		return errors.New("config has no process args")
	}
	if cfg.Mode == ModeInit && (cfg.Spec == nil || cfg.Spec.Root == nil) {
		return errors.New("init config has no spec root")
	}
	if cfg.Mode == ModeExec && cfg.Root == "" {
		return errors.New("exec config has no container root")
	}
	if cfg.Mode != ModeInit && cfg.Mode != ModeExec {
		return fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	return nil
}

func readRest(br *bufio.Reader, first []byte) ([]byte, error) {
	buf := append([]byte(nil), first...)
	for len(buf) <= maxConfigMessage {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == nil {
			return buf, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	return nil, errors.New("config message too large")
}

// writeStatus sends the status line, and the pty master if there is one.
func writeStatus(fd int, st Status, master *os.File) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	var rights []byte
	if master != nil {
		rights = unix.UnixRights(int(master.Fd()))
	}
	n, err := unix.SendmsgN(fd, b, rights, nil, 0)
	for err == nil && n < len(b) { // the rest of a long line, without the descriptor
		var m int
		m, err = unix.Write(fd, b[n:])
		n += m
	}
	return err
}

// warnings collects things skipped on purpose, for the agent's log.
type warnings struct{ list []string }

func (w *warnings) add(format string, args ...any) {
	w.list = append(w.list, fmt.Sprintf(format, args...))
}

// prepare does everything but the final execve. With a terminal it returns
// the pty master for the agent. A seccomp filter that is still to be loaded
// (with no_new_privs, as late as possible) is returned too.
func prepare(cfg *Config, w *warnings) (*os.File, *seccompFilter, error) {
	p := cfg.Process
	var filter *seccompFilter
	if cfg.Seccomp != nil {
		var err error
		if filter, err = cfg.Seccomp.decode(); err != nil {
			return nil, nil, err
		}
	}
	// Before any chroot: /proc is still the agent's here.
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(*p.OOMScoreAdj)), 0); err != nil {
			return nil, nil, fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	switch cfg.Mode {
	case ModeInit:
		spec := cfg.Spec
		if !cfg.Cgroup {
			spec = withoutCgroupMounts(spec, w)
		}
		view, err := enterCgroupNamespace(cfg)
		if err != nil {
			return nil, nil, err
		}
		if err := setupRootfs(spec, view, w); err != nil {
			return nil, nil, err
		}
		if err := setupUTS(cfg.Spec); err != nil {
			return nil, nil, err
		}
	case ModeExec:
		if err := unix.Chroot(cfg.Root); err != nil {
			return nil, nil, fmt.Errorf("enter the container's root %s: %w", cfg.Root, err)
		}
	}
	setDefaultHome(p)
	var master *os.File
	if p.Terminal {
		var err error
		if master, err = setupTerminal(cfg.Mode == ModeInit); err != nil {
			return nil, nil, err
		}
	}
	err := setCwd(p.Cwd)
	if err == nil {
		err = setRlimits(p.Rlimits)
	}
	if err == nil {
		err = fixStdioOwner(int(p.User.UID))
	}
	if err == nil && filter != nil && !p.NoNewPrivileges {
		// Without no_new_privs, loading a filter takes CAP_SYS_ADMIN:
		// load it before the capabilities are dropped (as runc does).
		err = filter.load()
		filter = nil
	}
	if err == nil {
		err = setCredentials(p, w)
	}
	if err != nil {
		if master != nil {
			master.Close()
		}
		return nil, nil, err
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	}
	return master, filter, nil
}

// setupTerminal opens a pty in the container's own devpts (so that ttyname
// gives a path that exists in the container), makes its slave stdin,
// stdout, stderr and the controlling terminal, and for the init binds it
// on /dev/console as runc does. It returns the master.
func setupTerminal(console bool) (*os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open the container's /dev/ptmx for a terminal (is /dev/pts mounted?): %w", err)
	}
	fail := func(err error) (*os.File, error) {
		master.Close()
		return nil, err
	}
	mfd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return fail(fmt.Errorf("unlock the pty: %w", err))
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		return fail(fmt.Errorf("get the pty number: %w", err))
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fail(fmt.Errorf("open the pty %s: %w", name, err))
	}
	defer unix.Close(slave)
	if console {
		if err := bindDevice(name, "/dev/console"); err != nil {
			return fail(err)
		}
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup2(slave, fd); err != nil {
			return fail(fmt.Errorf("make the pty fd %d: %w", fd, err))
		}
	}
	// The agent started this process in a new session.
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fail(fmt.Errorf("make the pty the controlling terminal: %w", err))
	}
	return master, nil
}

// fixStdioOwner gives the process's user its stdio pipes or pty (created by
// the agent, as root, mode 0600), so that reopening /dev/stdout or
// /proc/self/fd/1 works for a non-root user, as with runc.
func fixStdioOwner(uid int) error {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat stdio fd %d: %w", fd, err)
		}
		if int(st.Uid) == uid || (st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3)) {
			continue // already the user's, or /dev/null
		}
		err := unix.Fchown(fd, uid, int(st.Gid))
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("give stdio fd %d to uid %d: %w", fd, uid, err)
		}
	}
	return nil
}

func setupUTS(spec *specs.Spec) error {
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("set domain name %q: %w", spec.Domainname, err)
		}
	}
	return nil
}

// setCwd changes to the working directory while still root, so that a
// directory the user cannot search is no obstacle (as with runc).
func setCwd(cwd string) error {
	if cwd == "" {
		cwd = "/"
	}
	if cwd[0] != '/' {
		return fmt.Errorf("cwd %q must be absolute", cwd)
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("change to working directory %q: %w", cwd, err)
	}
	return nil
}
