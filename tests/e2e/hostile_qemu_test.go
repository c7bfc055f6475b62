package e2e

// The hostile-guest suite, QEMU's side: what a guest that breaks into QEMU
// (a device model, 9p or virtio-fs bug) would hold on the host, and what a
// container that joins a kata container's namespaces reaches. Checked from
// the host.

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// Capabilities, as bit numbers of /proc/<pid>/status masks.
const (
	capChown       = 0
	capDacOverride = 1
	capFowner      = 3
	capFsetid      = 4
	capNetAdmin    = 12
	capSysModule   = 16
	capSysPtrace   = 19
	capSysAdmin    = 21
	capMknod       = 27
	capSetfcap     = 31
)

// qemuCapMask is what QEMU may keep: what its 9p server needs.
const qemuCapMask = 1<<capChown | 1<<capDacOverride | 1<<capFowner | 1<<capFsetid | 1<<capMknod | 1<<capSetfcap

// kataTaskPid starts a kata container that stays up and returns the pid
// Docker knows it by (QEMU's).
func kataTaskPid(t *testing.T, args ...string) (name, pid string) {
	t.Helper()
	requireKata(t)
	name = startDetached(t, append(args, "busybox", "sleep", "600")...)
	pid = strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.Pid}}", name).stdout)
	if n, err := strconv.Atoi(pid); err != nil || n <= 0 {
		t.Fatalf("docker inspect: task pid %q", pid)
	}
	return name, pid
}

func procStatusFields(t *testing.T, pid string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func nsOf(t *testing.T, pid, ns string) string {
	t.Helper()
	l, err := os.Readlink("/proc/" + pid + "/ns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHostileQEMUConfined: QEMU runs under its seccomp filter, with only
// the capabilities its 9p server needs (also in the bounding set),
// no_new_privs, in a mount namespace of its own; and the 9p operations
// those capabilities exist for still work.
func TestHostileQEMUConfined(t *testing.T) {
	name, pid := kataTaskPid(t)
	st := procStatusFields(t, pid)
	t.Logf("QEMU pid %s: Seccomp %s NoNewPrivs %s CapEff %s CapBnd %s CapPrm %s Gid %q",
		pid, st["Seccomp"], st["NoNewPrivs"], st["CapEff"], st["CapBnd"], st["CapPrm"], st["Gid"])
	if st["Seccomp"] != "2" {
		t.Errorf("Seccomp = %q, want 2 (a filter): QEMU runs without -sandbox", st["Seccomp"])
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", st["NoNewPrivs"])
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		mask, err := strconv.ParseUint(st[k], 16, 64)
		if err != nil {
			t.Fatalf("%s = %q: %v", k, st[k], err)
		}
		if extra := mask &^ qemuCapMask; extra != 0 {
			t.Errorf("%s = %016x holds capabilities beyond what 9p needs: %016x", k, mask, extra)
		}
		for _, c := range []uint{capSysAdmin, capSysPtrace, capSysModule, capNetAdmin} {
			if mask&(1<<c) != 0 {
				t.Errorf("%s holds capability %d", k, c)
			}
		}
	}
	for _, k := range []string{"CapInh", "CapAmb"} {
		if st[k] != "0000000000000000" {
			t.Errorf("%s = %s, want none", k, st[k])
		}
	}
	if nsOf(t, pid, "mnt") == nsOf(t, "self", "mnt") {
		t.Error("QEMU runs in the host's mount namespace")
	}
	// Its mount namespace holds only what it must open: no host
	// configuration, no other container's data, nothing writable but its
	// own state and share.
	root := "/proc/" + pid + "/root"
	for _, p := range []string{"/etc/hostname", "/etc/shadow", "/root", "/var/lib", "/home"} {
		if _, err := os.Stat(root + p); err == nil {
			t.Errorf("QEMU sees the host's %s", p)
		}
	}
	if err := os.WriteFile(root+"/usr/kata-e2e-probe", nil, 0o600); err == nil {
		os.Remove(root + "/usr/kata-e2e-probe")
		t.Error("QEMU's /usr is writable")
	}
	// What the capabilities are kept for: the container changes owners and
	// modes in its rootfs, which QEMU does on the host.
	res := docker(t, "", "exec", name, "sh", "-c",
		"touch /f && chown 1234:5678 /f && chmod 750 /f && stat -c '%u %g %a' /f")
	if res.code != 0 || !strings.Contains(res.stdout, "1234 5678 750") {
		t.Errorf("chown/chmod in the rootfs: exit %d, %q %q", res.code, res.stdout, res.stderr)
	}
}

// TestHostileQEMUSidecarPidNamespace: a container that joins a kata
// container's pid namespace sees the VM's process and its own, none of the
// host's, and cannot read QEMU's view of the host through /proc.
func TestHostileQEMUSidecarPidNamespace(t *testing.T) {
	name, pid := kataTaskPid(t)
	for _, ns := range []string{"pid", "ipc", "uts", "mnt"} {
		if nsOf(t, pid, ns) == nsOf(t, "self", ns) {
			t.Errorf("the task pid %s is in the host's %s namespace", pid, ns)
		}
	}
	if nsOf(t, pid, "net") == nsOf(t, "self", "net") {
		t.Errorf("the task pid %s is in the host's network namespace", pid)
	}
	res := docker(t, "", "run", "--rm", "--runtime=runc", "--pid", "container:"+name, "busybox", "ps", "-o", "pid,comm")
	if res.code != 0 {
		t.Fatalf("runc sidecar --pid container:%s: %s", name, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	t.Logf("the sidecar sees:\n%s", res.stdout)
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch comm := f[1]; {
		case comm == "ps":
		case strings.HasPrefix(comm, "qemu"):
		default:
			t.Errorf("the sidecar sees a process that is neither its own nor the VM's: %q", l)
		}
	}
	if len(lines) > 3 {
		t.Errorf("the sidecar sees %d processes, want at most QEMU and itself", len(lines)-1)
	}
	// A sidecar with Docker's default capabilities must not reach QEMU's
	// root directory, descriptors or memory.
	for _, probe := range []string{"ls /proc/1/root/", "readlink /proc/1/fd/0 | grep .", "head -c 16 /proc/1/mem"} {
		res = docker(t, "", "run", "--rm", "--runtime=runc", "--pid", "container:"+name, "busybox", "sh", "-c", probe)
		if res.code == 0 {
			t.Errorf("a default sidecar could %q in the VM's pid namespace: %q", probe, res.stdout)
		}
	}
}

// TestHostileQEMUSidecarIPC: a container that joins a kata container's
// IPC namespace does not land in the host's.
func TestHostileQEMUSidecarIPC(t *testing.T) {
	name, pid := kataTaskPid(t, "--ipc", "shareable")
	res := docker(t, "", "run", "--rm", "--runtime=runc", "--ipc", "container:"+name, "busybox", "readlink", "/proc/self/ns/ipc")
	if res.code != 0 {
		t.Fatalf("runc sidecar --ipc container:%s: %s", name, res.stderr)
	}
	got := strings.TrimSpace(res.stdout)
	if host := nsOf(t, "self", "ipc"); got == host {
		t.Errorf("the sidecar joined the host's IPC namespace %s", host)
	}
	if want := nsOf(t, pid, "ipc"); got != want {
		t.Errorf("the sidecar's IPC namespace %s is not the task's %s", got, want)
	}
}
