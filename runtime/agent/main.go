package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// IdlePowerOff is how long a VM whose containers exited waits for a host.
const IdlePowerOff = 30 * time.Second

// Main runs the agent as the guest's init and never returns.
func Main(version string) {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kata-agent: refusing to run: it must be PID 1 (/init) of a kata-deploy guest VM; "+
			"elsewhere it would mount over /dev and /run and power the machine off")
		os.Exit(2)
	}
	mountErrs := mountBase()
	ensureStdFds()
	opts := ParseCmdline(readString("/proc/cmdline"))
	log := NewLogger(kernelLog(), opts.Debug)
	if opts.Debug {
		// Show the agent's notices on the console even under "quiet", and
		// do not rate-limit its writes to /dev/kmsg.
		unix.Syscall(unix.SYS_SYSLOG, unix.SYSLOG_ACTION_CONSOLE_LEVEL, 0, 7)
		os.WriteFile("/proc/sys/kernel/printk_devkmsg", []byte("on\n"), 0)
	}
	for _, err := range mountErrs {
		log.Errorf("%v", err)
	}
	loadModuleList(log)
	// The groups the host named load while the agent opens its port and the host sets up.
	modules := NewModuleGroups(agentproto.ModuleGroupsDir, agentproto.ModulesDir, log)
	for _, b := range opts.BadModules {
		log.Errorf("%s: %q is not a module group, skipped", agentproto.ModulesParam, b)
	}
	modules.Preload(opts.Modules)

	ctx := context.Background()
	reaper := NewReaper()
	go reaper.Run(ctx)
	var uts unix.Utsname
	unix.Uname(&uts)
	srv := NewServer(ServerConfig{
		Version:       version,
		KernelRelease: unix.ByteSliceToString(uts.Release[:]),
		Executor:      NewExecutor(log, reaper, ExecutorOptions{SetGuestHostname: true, DeviceCgroup: true, ResourceCgroup: true, CgroupV1: opts.CgroupV1}),
		Log:           log,
		IdlePowerOff:  IdlePowerOff,
		PowerOff:      func() { powerOff(log) },
		Restored:      func(r agentproto.Restored) error { return applyRestored(r, log) },
		Modules:       modules,
	})
	port := &SerialPort{Name: agentproto.AgentPortName, SysDir: agentproto.VirtioPortsDir, DevDir: "/dev", Log: log}
	log.Debugf("agent %s ready, serving on %s", version, agentproto.AgentPortName)
	err := srv.Serve(ctx, port)
	log.Errorf("serving the host stopped: %v", err)
	powerOff(log)
}

// baseMount is one of the filesystems every Linux userland expects.
type baseMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func baseMounts() []baseMount {
	const nsd = unix.MS_NOSUID | unix.MS_NODEV
	return []baseMount{
		{"proc", "/proc", "proc", nsd | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", nsd | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", nsd, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", nsd, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", nsd, "mode=1777"},
	}
}

// mountBase mounts the base filesystems; already mounted ones are fine.
func mountBase() []error {
	var errs []error
	for _, m := range baseMounts() {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", m.target, err))
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s at %s: %w", m.fstype, m.target, err))
		}
	}
	return errs
}

// ensureStdFds opens the console on fds 0-2 if the kernel could not (no
// /dev/console in the initrd): otherwise the first pipes created for a
// container would land there, and a Go panic would print into a container's
// stream.
func ensureStdFds() {
	for fd := 0; fd <= 2; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			continue
		}
		nfd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			nfd, err = unix.Open("/dev/null", unix.O_RDWR, 0)
		}
		if err != nil {
			continue
		}
		if nfd != fd {
			unix.Dup2(nfd, fd)
			unix.Close(nfd)
		}
	}
}

func kernelLog() io.Writer {
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		return f
	}
	return os.Stderr
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func loadModuleList(log *Logger) {
	loadModulesListedIn(agentproto.ModulesListPath, log)
}

// loadModulesListedIn loads the modules a list file names, in order.
func loadModulesListedIn(list string, log *Logger) {
	data, err := os.ReadFile(list)
	if errors.Is(err, os.ErrNotExist) {
		log.Debugf("no %s: loading no modules", list)
		return
	}
	if err != nil {
		log.Errorf("read %s: %v", list, err)
		return
	}
	names, bad := ParseModuleList(data)
	for _, b := range bad {
		log.Errorf("%s: %q is not a module name, skipped", list, b)
	}
	start := time.Now()
	n := LoadModules(agentproto.ModulesDir, names, log)
	log.Debugf("loaded %d of %d modules in %v", n, len(names), time.Since(start))
}

// powerOff syncs and powers the VM off. If that fails, exiting makes the
// kernel panic, and with panic=-1 and QEMU's -no-reboot the VM still ends.
func powerOff(log *Logger) {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	log.Errorf("power off: %v", err)
	os.Exit(1)
}
