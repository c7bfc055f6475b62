// Command bootinit is the /init of the guest image boot test: it loads the
// modules listed in /etc/kata-deploy/modules.load and in every module group
// list (/etc/kata-deploy/modules.d) with finit_module, mounts
// the 9p share "share", reports on the console and on the virtio-serial
// port "agent.0", and powers the VM off. It uses only the standard library
// so the test can build it without network access.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// sysFinitModule is finit_module(2) on x86-64; package syscall predates it.
const sysFinitModule = 313

func main() {
	defer powerOff()
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := syscall.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			fmt.Println("mount", m.dst, err)
		}
	}
	loaded, failed := loadModules()
	fsys, _ := os.ReadFile("/proc/filesystems")
	has := func(fs string) bool { return strings.Contains(string(fsys), "\t"+fs+"\n") }
	share := readShare()
	line := fmt.Sprintf("GUESTIMAGE-BOOT loaded=%d failed=%q 9p=%v virtiofs=%v share=%q", loaded, failed, has("9p"), has("virtiofs"), share)
	fmt.Println(line)
	if port := findPort("agent.0"); port != "" {
		if err := os.WriteFile(port, []byte(line+"\n"), 0); err != nil {
			fmt.Println("port", err)
		}
	} else {
		fmt.Println("GUESTIMAGE-BOOT no virtio port agent.0")
	}
}

// loadModules loads the boot list, then every group the agent loads on demand, and counts the
// distinct modules loaded.
func loadModules() (int, []string) {
	lists := []string{"/etc/kata-deploy/modules.load"}
	groups, _ := filepath.Glob("/etc/kata-deploy/modules.d/*.load")
	lists = append(lists, groups...)
	loaded := map[string]bool{}
	var failed []string
	for _, list := range lists {
		failed = append(failed, loadList(list, loaded)...)
	}
	return len(loaded), failed
}

func loadList(path string, loaded map[string]bool) (failed []string) {
	list, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	empty := []byte{0}
	for _, name := range strings.Fields(string(list)) {
		f, err := os.Open("/lib/modules/" + name + ".ko")
		if err != nil {
			failed = append(failed, name+": "+err.Error())
			continue
		}
		_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&empty[0])), 0)
		f.Close()
		if errno != 0 && errno != syscall.EEXIST {
			failed = append(failed, name+": "+errno.Error())
			continue
		}
		loaded[name] = true
	}
	return failed
}

// readShare mounts the 9p share; the virtio device may still be probing.
func readShare() string {
	os.MkdirAll("/run/share", 0o755)
	var err error
	for range 200 {
		err = syscall.Mount("share", "/run/share", "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=mmap")
		if err == nil {
			b, rerr := os.ReadFile("/run/share/hello.txt")
			if rerr != nil {
				return "read: " + rerr.Error()
			}
			return strings.TrimSpace(string(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "mount: " + err.Error()
}

func findPort(name string) string {
	for range 200 {
		ents, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, e := range ents {
			if b, _ := os.ReadFile(e); strings.TrimSpace(string(b)) == name {
				return "/dev/" + filepath.Base(filepath.Dir(e))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

func powerOff() {
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
