// Command guestinit is the /init of the hypervisor package's VM tests: it
// loads the initrd's modules, mounts the shares named on the kernel
// command line, writes "hello" plus each share's hello.txt to the agent.0
// virtio-serial port, and powers off ("kdtest=hello"), waits to be
// killed ("kdtest=wait") or writes to its serial console without end
// ("kdtest=flood").
//
// With kdtest.ops=1 it also does, in each share, what a root container does
// to its rootfs (a file given to another owner, then its mode changed,
// a write to a file of another user) and reports "ops=ok" or the error.
//
// Kernel parameters: kdtest=hello|wait|flood, kdtest.fs=<9p|virtiofs>:<tag> (repeatable),
// kdtest.ops=1, kdtest.write=<path under /mnt> (repeatable: write "pwned" there, as root
// in the guest, once the shares are mounted, and report the outcome).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	modulesLoad  = "/etc/kata-deploy/modules.load"
	moduleGroups = "/etc/kata-deploy/modules.d"
	modulesDir   = "/lib/modules"
	portName     = "agent.0"
)

func main() {
	err := run()
	if err != nil {
		fmt.Println("guestinit:", err)
	}
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	for _, m := range []struct{ src, dir, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := syscall.Mount(m.src, m.dir, m.typ, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	if err := loadModules(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	mode, shares := parse(string(cmdline))
	writes := paramValues(string(cmdline), "kdtest.write=")
	ops := strings.Contains(string(cmdline), "kdtest.ops=1")
	port, err := openPort()
	if err != nil {
		return err
	}
	defer port.Close()
	msg := "hello"
	for _, s := range shares {
		content, err := readShare(s)
		if err != nil {
			msg += " error=" + strings.ReplaceAll(err.Error(), " ", "_")
			continue
		}
		msg += " " + s[1] + "=" + content
		if ops {
			if err := rootOps("/mnt/" + s[1]); err != nil {
				msg += " ops=" + strings.ReplaceAll(err.Error(), " ", "_")
			} else {
				msg += " ops=ok"
			}
		}
	}
	for _, w := range writes {
		outcome := "ok"
		if err := os.WriteFile(filepath.Join("/mnt", w), []byte("pwned\n"), 0o644); err != nil {
			outcome = strings.ReplaceAll(err.Error(), " ", "_")
		}
		msg += " write:" + w + "=" + outcome
	}
	// Blocks until the host connects to the port's socket.
	if _, err := fmt.Fprintln(port, msg); err != nil {
		return fmt.Errorf("write port: %w", err)
	}
	if mode == "flood" {
		return flood()
	}
	if mode == "wait" {
		for {
			time.Sleep(time.Hour)
		}
	}
	return nil
}

func parse(cmdline string) (mode string, shares [][2]string) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "kdtest="); ok {
			mode = v
		}
		if v, ok := strings.CutPrefix(f, "kdtest.fs="); ok {
			if typ, tag, ok := strings.Cut(v, ":"); ok {
				shares = append(shares, [2]string{typ, tag})
			}
		}
	}
	return mode, shares
}

func paramValues(cmdline, prefix string) []string {
	var vals []string
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, prefix); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// loadModules loads the boot modules, then the groups the agent loads on demand that these
// tests use: the shared file systems.
func loadModules() error {
	if err := loadModuleList(modulesLoad); err != nil {
		return err
	}
	for _, group := range []string{"9p", "virtiofs"} {
		err := loadModuleList(filepath.Join(moduleGroups, group+".load"))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

func loadModuleList(path string) error {
	list, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(list)) {
		f, err := os.Open(filepath.Join(modulesDir, name+".ko"))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", name, err)
		}
	}
	return nil
}

func openPort() (*os.File, error) {
	for range 500 {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, _ := os.ReadFile(n)
			if strings.TrimSpace(string(b)) == portName {
				return os.OpenFile("/dev/"+filepath.Base(filepath.Dir(n)), os.O_RDWR, 0)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("no virtio port named %s", portName)
}

func readShare(s [2]string) (string, error) {
	typ, tag := s[0], s[1]
	dir := "/mnt/" + tag
	_ = os.MkdirAll(dir, 0o755)
	opts := ""
	if typ == "9p" {
		opts = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"
	}
	var err error
	for range 200 {
		if err = syscall.Mount(tag, dir, typ, 0, opts); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("mount %s %s: %w", typ, tag, err)
	}
	b, err := os.ReadFile(dir + "/hello.txt")
	return strings.TrimSpace(string(b)), err
}

// flood writes to ttyS0, the console the host logs, until the VM is killed.
func flood() error {
	tty, err := os.OpenFile("/dev/ttyS0", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	line := []byte(strings.Repeat("console flood ", 8) + "\n")
	for {
		if _, err := tty.Write(line); err != nil {
			return err
		}
	}
}

// rootOps needs, on the host side, CHOWN, FOWNER (the mode of a file of
// another owner) and DAC_OVERRIDE.
func rootOps(dir string) error {
	f := dir + "/made"
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		return err
	}
	if err := os.Chown(f, 1234, 5678); err != nil {
		return err
	}
	if err := os.Chmod(f, 0o750); err != nil {
		return err
	}
	return os.WriteFile(dir+"/other.txt", []byte("written by guest root\n"), 0o600)
}
