package agent_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	shareTag  = "rootfs"
	sharePath = "/run/kata-containers/shared/test"
)

// dockerSpec is shaped like the spec Docker hands to a runtime, with the
// rootfs and file binds under the test share's guest path.
func dockerSpec(args ...string) *specs.Spec {
	return dockerSpecAt(sharePath, args...)
}

// dockerSpecAt is dockerSpec for a rootfs at root.
func dockerSpecAt(root string, args ...string) *specs.Spec {
	defaultCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: root},
		Hostname: "vmtest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
			{Destination: "/etc/hosts", Type: "bind", Source: root + "/extra/hosts", Options: []string{"rbind", "rprivate", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

func TestVM(t *testing.T) {
	needVM(t)
	start := time.Now()
	dir := t.TempDir()
	img := testguest.Get(t)
	share := filepath.Join(dir, "share")
	blobSum := buildRootfs(t, share)
	t.Logf("assets ready in %v", time.Since(start))

	vm := bootVM(t, dir, img.Vmlinux, img.Initrd, share)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	bootStart := time.Now()
	pingCtx, pingCancel := context.WithTimeout(ctx, 60*time.Second)
	info, err := vm.client.Ping(pingCtx)
	pingCancel()
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	t.Logf("agent %q up after %v, kernel %s", info.Version, time.Since(bootStart), info.KernelRelease)
	if info.Version != testguest.AgentVersion || !strings.HasSuffix(info.KernelRelease, "-amd64") || info.ProtocolVersion != agentproto.ProtocolVersion {
		t.Errorf("ping answered %+v", info)
	}
	c := vm.client
	shares := []agentproto.Share{{Type: agentproto.Share9P, Tag: shareTag, GuestPath: sharePath}}
	req := func(id string, spec *specs.Spec) agentproto.CreateContainerRequest {
		return agentproto.CreateContainerRequest{ID: id, Spec: spec, Shares: shares}
	}

	t.Run("exit status and outputs", func(t *testing.T) {
		r := run(ctx, t, c, req("basic", dockerSpec("sh", "-c", "echo out; echo err >&2; exit 42")), nil)
		if r.status != 42 || r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("got status %d stdout %q stderr %q, want 42 %q %q", r.status, r.stdout, r.stderr, "out\n", "err\n")
		}
	})

	t.Run("a MiB of output arrives complete", func(t *testing.T) {
		r := run(ctx, t, c, req("blob", dockerSpec("cat", "/data/blob")), nil)
		if r.status != 0 || len(r.stdout) != 1<<20 || sha256.Sum256([]byte(r.stdout)) != blobSum {
			t.Errorf("status %d, %d bytes, sha256 match %v; stderr %q", r.status, len(r.stdout), sha256.Sum256([]byte(r.stdout)) == blobSum, r.stderr)
		}
	})

	t.Run("stdin is piped with EOF", func(t *testing.T) {
		in := []byte(strings.Repeat("stdin line\n", 20000))
		r := run(ctx, t, c, req("stdin", dockerSpec("cat")), in)
		if r.status != 0 || r.stdout != string(in) {
			t.Errorf("status %d, got %d bytes back of %d; stderr %q", r.status, len(r.stdout), len(in), r.stderr)
		}
	})

	t.Run("no stdin attached reads EOF", func(t *testing.T) {
		r := run(ctx, t, c, req("nostdin", dockerSpec("sh", "-c", "cat; echo done")), nil)
		if r.status != 0 || r.stdout != "done\n" {
			t.Errorf("status %d stdout %q stderr %q", r.status, r.stdout, r.stderr)
		}
	})

	t.Run("env cwd user and namespaces", func(t *testing.T) {
		spec := dockerSpec("sh", "-c", `echo "$FOO"; pwd; id -u; id -g; grep Groups /proc/self/status; hostname; echo $$; cat /etc/hosts; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; touch /ro-test 2>&1 || echo ro; echo to-dev-stderr >/dev/stderr; ulimit -n; umask`)
		spec.Process.Env = append(spec.Process.Env, "FOO=bar baz")
		spec.Process.Cwd = "/tmp/work"
		spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 1000}, Umask: ptr(uint32(0o027))}
		spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 654}}
		spec.Root.Readonly = true
		// Docker gives a non-root user no effective or permitted capabilities.
		spec.Process.Capabilities.Effective, spec.Process.Capabilities.Permitted = nil, nil
		r := run(ctx, t, c, req("user", spec), nil)
		want := strings.Join([]string{
			"bar baz", "/tmp/work", "1000", "1000", "Groups:\t10 1000 ", "vmtest", "1",
			"127.0.0.1 localhost from-a-file-bind",
			"CapEff:\t0000000000000000", "NoNewPrivs:\t1",
		}, "\n") + "\n"
		if r.status != 0 || !strings.HasPrefix(r.stdout, want) {
			t.Errorf("status %d stdout:\n%s\nwant prefix:\n%s\nstderr %q", r.status, r.stdout, want, r.stderr)
		}
		if !strings.Contains(r.stdout, "Read-only file system") || !strings.HasSuffix(r.stdout, "321\n0027\n") {
			t.Errorf("read-only rootfs, rlimit or umask not applied:\n%s", r.stdout)
		}
		if r.stderr != "to-dev-stderr\n" {
			t.Errorf("a non-root user cannot reopen its stderr: %q", r.stderr)
		}
	})

	t.Run("root keeps the spec's capabilities", func(t *testing.T) {
		r := run(ctx, t, c, req("caps", dockerSpec("sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status")), nil)
		// Docker's default set: 0x00000000a80425fb.
		want := "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n"
		if r.status != 0 || r.stdout != want {
			t.Errorf("status %d stdout %q, want %q; stderr %q", r.status, r.stdout, want, r.stderr)
		}
	})

	t.Run("exec failures", func(t *testing.T) {
		r := run(ctx, t, c, req("notfound", dockerSpec("no-such-command")), nil)
		if r.status != 127 || !strings.Contains(r.stderr, "executable file not found") {
			t.Errorf("missing command: status %d stderr %q", r.status, r.stderr)
		}
		r = run(ctx, t, c, req("noexec", dockerSpec("/bin/not-exec.sh")), nil)
		if r.status != 126 || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("non-executable: status %d stderr %q", r.status, r.stderr)
		}
	})

	t.Run("SIGKILL gives 137 and exec joins the container", func(t *testing.T) {
		id := "killme"
		if err := c.CreateContainer(ctx, req(id, dockerSpec("sleep", "1000"))); err != nil {
			t.Fatal(err)
		}
		r := startAndWait(ctx, t, c, id, "", false, nil, func() {
			p := &specs.Process{Args: []string{"sh", "-c", "hostname; cat /etc/hosts; cat /proc/1/comm; echo $FOO; pwd; id -u"},
				Env: []string{"PATH=/bin", "FOO=exec"}, Cwd: "/tmp", User: specs.User{UID: 1000, GID: 1000}}
			if err := c.Exec(ctx, id, "ex2", p); err != nil {
				t.Fatalf("exec: %v", err)
			}
			er := startAndWait(ctx, t, c, id, "ex2", false, nil, nil)
			want := "vmtest\n127.0.0.1 localhost from-a-file-bind\nsleep\nexec\n/tmp\n1000\n"
			if er.status != 0 || er.stdout != want {
				t.Errorf("exec: status %d stdout %q want %q stderr %q", er.status, er.stdout, want, er.stderr)
			}
			pids, err := c.Pids(ctx, id)
			if err != nil || len(pids) != 1 {
				t.Errorf("pids %v, %v; want the one sleep", pids, err)
			}
			st, err := c.Stats(ctx, id)
			if err != nil || st.MemoryLimitBytes == 0 || st.MemoryUsageBytes == 0 || st.CPUUsageNs == 0 || st.Pids != 1 {
				t.Errorf("stats %+v, %v", st, err)
			}
			if err := c.Signal(ctx, id, "", syscall.SIGKILL, false); err != nil {
				t.Fatalf("signal: %v", err)
			}
		})
		if r.status != 137 {
			t.Errorf("status %d, want 137", r.status)
		}
		// Kill after exit is not an error; Pids of an exited container is empty.
		if err := c.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
			t.Errorf("signal after exit: %v", err)
		}
		if err := c.RemoveContainer(ctx, id); err != nil {
			t.Errorf("remove: %v", err)
		}
	})

	t.Run("seccomp, no_new_privs and device rules, for init and exec", func(t *testing.T) {
		// Docker's default device rules and a profile that denies chown.
		dev := func(allow bool, major, minor int64) specs.LinuxDeviceCgroup {
			return specs.LinuxDeviceCgroup{Allow: allow, Type: "c", Major: ptr(major), Minor: ptr(minor), Access: "rwm"}
		}
		confined := func(args ...string) *specs.Spec {
			spec := dockerSpec(args...)
			spec.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
				dev(true, 1, 5), dev(true, 1, 3), dev(true, 1, 9), dev(true, 1, 8), dev(true, 5, 0), dev(true, 5, 1), dev(false, 10, 229)}}
			spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
				Syscalls:      []specs.LinuxSyscall{{Names: []string{"chown", "fchown", "fchownat", "lchown"}, Action: specs.ActErrno}}}
			return spec
		}
		const script = `grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; touch /tmp/f; chown 1 /tmp/f 2>&1; ` +
			`for d in "null 1 3" "kmsg 1 11" "console 5 1" "mem 1 1"; do set -- $d; mknod /dev/x$1 c $2 $3; ` +
			`true >>/dev/x$1 2>/dev/null && echo $1=ok || echo $1=refused; done`
		const want = "NoNewPrivs:\t1\nSeccomp:\t2\nchown: /tmp/f: Operation not permitted\nnull=ok\nkmsg=refused\nconsole=refused\nmem=refused\n"
		r := run(ctx, t, c, req("confined", confined("sh", "-c", script)), nil)
		if r.stdout != want {
			t.Errorf("init: status %d stdout %q, want %q; stderr %q", r.status, r.stdout, want, r.stderr)
		}
		// Without no_new_privs the filter is loaded while the process can
		// still (CAP_SYS_ADMIN), then the user and capabilities change.
		spec := confined("sh", "-c", "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status; id -u")
		spec.Process.NoNewPrivileges = false
		spec.Process.User = specs.User{UID: 1000, GID: 1000}
		spec.Process.Capabilities.Effective, spec.Process.Capabilities.Permitted = nil, nil
		if r := run(ctx, t, c, req("confined-user", spec), nil); r.stdout != "CapEff:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n1000\n" {
			t.Errorf("without no_new_privs: status %d stdout %q stderr %q", r.status, r.stdout, r.stderr)
		}
		id := "confined-exec"
		if err := c.CreateContainer(ctx, req(id, confined("sleep", "1000"))); err != nil {
			t.Fatal(err)
		}
		startAndWait(ctx, t, c, id, "", false, nil, func() {
			p := &specs.Process{Args: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}, Cwd: "/",
				Capabilities:    &specs.LinuxCapabilities{Bounding: []string{"CAP_MKNOD", "CAP_CHOWN"}, Effective: []string{"CAP_MKNOD", "CAP_CHOWN"}, Permitted: []string{"CAP_MKNOD", "CAP_CHOWN"}},
				NoNewPrivileges: true}
			if err := c.Exec(ctx, id, "ex", p); err != nil {
				t.Fatalf("exec: %v", err)
			}
			er := startAndWait(ctx, t, c, id, "ex", false, nil, nil)
			if er.stdout != want {
				t.Errorf("exec: status %d stdout %q, want %q; stderr %q", er.status, er.stdout, want, er.stderr)
			}
			if err := c.Signal(ctx, id, "", syscall.SIGKILL, false); err != nil {
				t.Fatalf("signal: %v", err)
			}
		})
	})

	t.Run("terminal", func(t *testing.T) {
		spec := dockerSpec("sh", "-c", "tty; stty size; echo $TERM; [ /dev/console -ef /dev/pts/0 ] && echo console")
		spec.Process.Terminal = true
		spec.Process.Env = append(spec.Process.Env, "TERM=xterm")
		spec.Process.ConsoleSize = &specs.Box{Height: 40, Width: 100}
		r := run(ctx, t, c, req("tty", spec), nil)
		// The pty is the container's own (its devpts instance starts at 0).
		want := "/dev/pts/0\r\n40 100\r\nxterm\r\nconsole\r\n"
		if r.status != 0 || r.stdout != want {
			t.Errorf("status %d stdout %q, want %q", r.status, r.stdout, want)
		}
	})

	t.Run("errors are reported", func(t *testing.T) {
		if err := c.CreateContainer(ctx, req("basic", dockerSpec("true"))); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("duplicate id: %v", err)
		}
		bad := dockerSpec("true")
		bad.Mounts = append(bad.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/not/in/a/share", Options: []string{"rbind"}})
		if err := c.CreateContainer(ctx, req("badbind", bad)); err == nil || !strings.Contains(err.Error(), "/not/in/a/share") {
			t.Errorf("bad bind: %v", err)
		}
		if _, err := c.Wait(ctx, "nope", ""); err == nil {
			t.Errorf("wait on an unknown container succeeded")
		}
	})
	t.Run("a new host session sees the same containers", func(t *testing.T) {
		vm.connect(t)
		c = vm.client
		pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
		defer pcancel()
		if _, err := c.Ping(pctx); err != nil {
			t.Fatalf("ping after reconnecting: %v", err)
		}
		if st, err := c.Wait(ctx, "basic", ""); err != nil || st != 42 {
			t.Errorf("wait over the new session: %d, %v", st, err)
		}
	})

	t.Logf("tests done after %v", time.Since(start))
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := vm.waitExit(20 * time.Second); err != nil {
		t.Fatalf("qemu after shutdown: %v", err)
	}
	t.Logf("VM powered off; total %v", time.Since(start))
	if b, _ := os.ReadFile(vm.console); testing.Verbose() {
		fmt.Printf("guest console:\n%s\n", b)
	}
}

func ptr[T any](v T) *T { return &v }
