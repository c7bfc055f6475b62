package agent_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agent"
	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestMain lets the test binary act as the agent binary: the real executor
// re-executes /proc/self/exe with containerinit.Arg.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == containerinit.Arg {
		containerinit.Main()
	}
	os.Exit(m.Run())
}

// hostAgent serves the real executor on this machine to a client until the test ends. Its
// reaper waits for every child of this test binary, so it stops with the test, before other
// tests start processes of their own. The agent's log is printed when the test failed.
func hostAgent(ctx context.Context, t *testing.T) (*agent.NSExecutor, *agentproto.Client) {
	t.Helper()
	reaperCtx, stopReaper := context.WithCancel(ctx)
	t.Cleanup(stopReaper)
	reaper := agent.NewReaper()
	go reaper.Run(reaperCtx)
	log := &syncBuffer{}
	exec := agent.NewExecutor(agent.NewLogger(log, true), reaper, agent.ExecutorOptions{})
	srv := agent.NewServer(agent.ServerConfig{Executor: exec, Log: agent.NewLogger(log, true)})
	hostEnd, guestEnd := socketPair(t)
	go srv.ServeConn(ctx, guestEnd)
	c, err := agentproto.NewClient(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() || testing.Verbose() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	return exec, c
}

// TestRealExecutorOnHost runs containers with the real executor on this
// machine, in fresh namespaces (the host's mounts are untouched). Unlike
// the VM, the host's root is not an initramfs, so this covers pivot_root.
func TestRealExecutorOnHost(t *testing.T) {
	testreq.Root(t)
	needStaticBusybox(t)
	root := t.TempDir()
	buildRootfs(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, c := hostAgent(ctx, t)
	hostname, _ := os.Hostname()

	spec := dockerSpecAt(root, "sh", "-c", `echo $$; hostname; cat /etc/hosts; ls /proc/1/root >/dev/null && echo proc; grep -c . /proc/mounts >/dev/null && echo mounts; echo err >&2; exit 5`)
	r := run(ctx, t, c, agentproto.CreateContainerRequest{ID: "host1", Spec: spec}, nil)
	want := "1\nvmtest\n127.0.0.1 localhost from-a-file-bind\nproc\nmounts\n"
	if r.status != 5 || r.stdout != want || r.stderr != "err\n" {
		t.Errorf("got %+v, want stdout %q", r, want)
	}
	if h, _ := os.Hostname(); h != hostname {
		t.Fatalf("the host's hostname changed from %q to %q", hostname, h)
	}

	// Exec joins a running container; the container is then killed.
	if err := c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: "host2", Spec: dockerSpecAt(root, "sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	r = startAndWait(ctx, t, c, "host2", "", false, nil, func() {
		p := &specs.Process{Args: []string{"sh", "-c", "cat /proc/1/comm; hostname; id -u"}, Env: []string{"PATH=/bin"}, Cwd: "/", User: specs.User{UID: 1000, GID: 1000}}
		if err := c.Exec(ctx, "host2", "x", p); err != nil {
			t.Fatal(err)
		}
		er := startAndWait(ctx, t, c, "host2", "x", false, nil, nil)
		if er.status != 0 || er.stdout != "sleep\nvmtest\n1000\n" {
			t.Errorf("exec: %+v", er)
		}
		p = &specs.Process{Args: []string{"sh", "-c", "tty; echo $$ >/dev/stdout"}, Env: []string{"PATH=/bin"}, Cwd: "/", Terminal: true,
			User: specs.User{UID: 1000, GID: 1000}}
		if err := c.Exec(ctx, "host2", "tty", p); err != nil {
			t.Fatal(err)
		}
		er = startAndWait(ctx, t, c, "host2", "tty", true, nil, nil)
		if er.status != 0 || !strings.HasPrefix(er.stdout, "/dev/pts/0\r\n") {
			t.Errorf("exec with a terminal: %+v", er)
		}
		if err := c.Signal(ctx, "host2", "", syscall.SIGKILL, true); err != nil {
			t.Error(err)
		}
	})
	if r.status != 137 {
		t.Errorf("killed container: status %d", r.status)
	}

	// Start returns once the program runs (execve done), not while the setup code still runs: a
	// signal sent right after it must reach the program.
	if err := c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: "host4", Spec: dockerSpecAt(root, "sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	pid, err := c.Start(ctx, "host4", "")
	if err != nil {
		t.Fatal(err)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || string(comm) != "sleep\n" {
		t.Errorf("right after Start, pid %d runs %q (%v), want sleep", pid, comm, err)
	}
	if err := c.Signal(ctx, "host4", "", syscall.SIGKILL, false); err != nil {
		t.Error(err)
	}
	if st, err := c.Wait(ctx, "host4", ""); err != nil || st != 137 {
		t.Errorf("host4 wait: %d, %v", st, err)
	}

	// A SIGTERM right after Start waits for the init's handler (an init drops signals it has no
	// handler for) and is not lost.
	trap := dockerSpecAt(root, "sh", "-c", `trap "exit 7" TERM; while :; do sleep 0.05; done`)
	if err := c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: "host5", Spec: trap}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "host5", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(ctx, "host5", "", syscall.SIGTERM, false); err != nil {
		t.Error(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if st, err := c.Wait(wctx, "host5", ""); err != nil || st != 7 {
		t.Errorf("SIGTERM right after start: wait %d, %v; want the trap's exit 7", st, err)
	}
	wcancel()

	// A filter compiled by the host (as the shim sends it): mkdir is refused with EPERM. A
	// program that is not whole instructions is refused at create, naming the host's filter.
	f, _, err := containerinit.CompileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno}}})
	if err != nil {
		t.Fatal(err)
	}
	filtered := dockerSpecAt(root, "sh", "-c", "mkdir /tmp/refused 2>&1; echo $?")
	r = run(ctx, t, c, agentproto.CreateContainerRequest{ID: "host6", Spec: filtered,
		Seccomp: &agentproto.Seccomp{Program: f.Program, Flags: uint64(f.Flags)}}, nil)
	if r.status != 0 || !strings.Contains(r.stdout, "Operation not permitted") || !strings.HasSuffix(r.stdout, "1\n") {
		t.Errorf("mkdir under the host's filter: %+v, want EPERM", r)
	}
	err = c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: "host7", Spec: dockerSpecAt(root, "true"),
		Seccomp: &agentproto.Seccomp{Program: f.Program[:len(f.Program)-1]}})
	if err == nil || !strings.Contains(err.Error(), "the host's seccomp filter") {
		t.Errorf("create with a cut program: %v, want a refusal naming the host's filter", err)
	}

	// A terminal, resized after start.
	tty := dockerSpecAt(root, "sh", "-c", "read line; stty size")
	tty.Process.Terminal = true
	if err := c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: "host3", Spec: tty}); err != nil {
		t.Fatal(err)
	}
	out, err := c.Stdio(ctx, "host3", "", agentproto.StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Stdio(ctx, "host3", "", agentproto.StreamStdin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "host3", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.ResizePty(ctx, "host3", "", 132, 43); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("go\n"))
	if st, err := c.Wait(ctx, "host3", ""); err != nil || st != 0 {
		t.Errorf("tty wait: %d, %v", st, err)
	}
	b, _ := io.ReadAll(out)
	if !strings.HasSuffix(string(b), "43 132\r\n") {
		t.Errorf("tty output %q", b)
	}
	in.Close()
}
