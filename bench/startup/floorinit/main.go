// Command floorinit is the /init of the benchmark's floor VM: the least a VM container must do.
// It mounts /dev, /proc and /sys, loads the kernel modules named by floor.modules= (in that
// order, from /lib/modules/<name>.ko), mounts the 9p share tagged floor.tag= at /mnt, runs
// floor.cmd= (comma-separated argv) chrooted there, writes "exit=<status>" (or "error=<text>")
// to the virtio-serial port named floor.port=, and powers off.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	var msg string
	params, err := mountBasics()
	if err != nil {
		msg = "error=" + err.Error()
	} else {
		msg = run(params)
	}
	if err := report(params["floor.port"], msg); err != nil {
		fmt.Println("floorinit:", err, msg)
	}
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

// mountBasics mounts /dev, /proc and /sys and returns the floor.* kernel parameters.
func mountBasics() (map[string]string, error) {
	for _, m := range []struct{ src, dir, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.src, m.dir, m.typ, 0, ""); err != nil {
			return nil, fmt.Errorf("mount_%s:_%w", m.dir, err)
		}
	}
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	p := map[string]string{}
	for _, f := range strings.Fields(string(data)) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "floor.") {
			p[k] = v
		}
	}
	return p, nil
}

func run(p map[string]string) string {
	if err := loadModules(strings.Split(p["floor.modules"], ",")); err != nil {
		return "error=" + err.Error()
	}
	if err := os.MkdirAll("/mnt", 0o755); err != nil {
		return "error=" + err.Error()
	}
	if err := syscall.Mount(p["floor.tag"], "/mnt", "9p", 0, "trans=virtio,version=9p2000.L,msize=512000,cache=mmap"); err != nil {
		return "error=mount_9p:_" + err.Error()
	}
	argv := strings.Split(p["floor.cmd"], ",")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: "/mnt"}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/usr/bin"}
	err := cmd.Run()
	if cmd.ProcessState == nil {
		return "error=" + err.Error()
	}
	return fmt.Sprintf("exit=%d", cmd.ProcessState.ExitCode())
}

func loadModules(names []string) error {
	for _, name := range names {
		if name == "" {
			continue
		}
		f, err := os.Open(filepath.Join("/lib/modules", name+".ko"))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load_%s:_%w", name, err)
		}
	}
	return nil
}

// report writes msg to the virtio-serial port named name (the host reads it from its socket).
func report(name, msg string) error {
	for range 500 {
		links, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, l := range links {
			if b, _ := os.ReadFile(l); strings.TrimSpace(string(b)) == name {
				port, err := os.OpenFile("/dev/"+filepath.Base(filepath.Dir(l)), os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				defer port.Close()
				_, err = fmt.Fprintln(port, msg)
				return err
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no virtio-serial port %q", name)
}
