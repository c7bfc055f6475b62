package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
)

// startDetached runs a kata container that stays up, and removes it when the test ends.
func startDetached(t *testing.T, args ...string) string {
	t.Helper()
	name := fmt.Sprintf("kata-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
	t.Cleanup(func() { docker(t, "", "rm", "-f", name) })
	full := append([]string{"run", "-d", "--name", name, "--runtime=kata"}, args...)
	if res := docker(t, "", full...); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	return name
}

func TestKataExec(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "-e", "FROM_RUN=1", "busybox", "sleep", "600")
	hostname := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.Config.Hostname}}", name).stdout)
	tests := []struct {
		opts, args []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{nil, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, "", 3, "out\n", "err\n"},
		{[]string{"-e", "X=exec-env", "-w", "/tmp", "-u", "65534"}, []string{"sh", "-c", `echo "$X $FROM_RUN"; pwd; id -u`}, "", 0, "exec-env 1\n/tmp\n65534\n", ""},
		{[]string{"-i"}, []string{"sh", "-c", "cat; echo eof"}, "piped\n", 0, "piped\neof\n", ""},
		{nil, []string{"hostname"}, "", 0, hostname + "\n", ""},
		{nil, []string{"no-such-binary"}, "", 127, "", "no-such-binary"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append(tt.opts, tt.args...), " "), func(t *testing.T) {
			args := append(append(append([]string{"exec"}, tt.opts...), name), tt.args...)
			res := docker(t, tt.stdin, args...)
			if res.code != tt.wantCode || res.stdout != tt.wantStdout || !strings.Contains(res.stderr, tt.wantStderr) {
				t.Errorf("exit %d (want %d), stdout %q (want %q), stderr %q (want %q)", res.code, tt.wantCode, res.stdout, tt.wantStdout, res.stderr, tt.wantStderr)
			}
		})
	}
	// The exec shares the container's pid namespace: it sees the container's init as pid 1.
	if res := docker(t, "", "exec", name, "cat", "/proc/1/cmdline"); !strings.HasPrefix(res.stdout, "sleep") {
		t.Errorf("/proc/1/cmdline from an exec = %q, want the container's sleep", res.stdout)
	}
}

// terminal drives a command through a real pseudo-terminal, like a user at a shell.
type terminal struct {
	t      *testing.T
	pty    console.Console
	cmd    *exec.Cmd
	mu     sync.Mutex
	screen bytes.Buffer
}

func newTerminal(t *testing.T, rows, cols uint16, name string, args ...string) *terminal {
	t.Helper()
	pty, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatalf("opening a pty: %v", err)
	}
	if err := pty.Resize(console.WinSize{Height: rows, Width: cols}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	term := &terminal{t: t, pty: pty, cmd: cmd}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pty.Read(buf)
			term.mu.Lock()
			term.screen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); pty.Close() })
	return term
}

func (term *terminal) send(s string) {
	if _, err := term.pty.Write([]byte(s)); err != nil {
		term.t.Fatalf("typing %q: %v", s, err)
	}
}

// expect waits until the screen, after what earlier expects consumed, shows want.
func (term *terminal) expect(want string) {
	term.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		term.mu.Lock()
		i := strings.Index(term.screen.String(), want)
		if i >= 0 {
			term.screen.Next(i + len(want))
			term.mu.Unlock()
			return
		}
		term.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	term.mu.Lock()
	defer term.mu.Unlock()
	term.t.Fatalf("the terminal never showed %q; it shows:\n%q", want, term.screen.String())
}

func (term *terminal) wait() int {
	done := make(chan error, 1)
	go func() { done <- term.cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(60 * time.Second):
		term.t.Fatal("the docker CLI did not exit")
		return -1
	}
}

// TestKataInteractiveShell: `docker run -it` gets a real pty in the guest: a prompt, the window
// size and its changes, Ctrl-C interrupting the foreground command, and the exit code.
func TestKataInteractiveShell(t *testing.T) {
	requireKata(t)
	term := newTerminal(t, 24, 80, "docker", "run", "-it", "--rm", "--runtime=kata", "busybox", "sh")
	term.expect("# ")
	term.send("tty; stty size\r")
	term.expect("/dev/pts/0")
	term.expect("24 80")
	if err := term.pty.Resize(console.WinSize{Height: 40, Width: 120}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the CLI forwards SIGWINCH asynchronously
	term.send("stty size\r")
	term.expect("40 120")
	term.send("sleep 100; echo not-interrupted\r")
	time.Sleep(time.Second)
	term.send("\x03") // Ctrl-C
	term.expect("# ")
	term.send("echo after-ctrl-c\r")
	term.expect("after-ctrl-c")
	term.send("exit 5\r")
	if code := term.wait(); code != 5 {
		t.Errorf("docker run -it exit code = %d, want 5", code)
	}
}

// TestKataExecInteractive: `docker exec -it` into a running container, ended with Ctrl-D.
func TestKataExecInteractive(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "busybox", "sleep", "600")
	term := newTerminal(t, 30, 100, "docker", "exec", "-it", name, "sh")
	term.expect("# ")
	term.send("stty size; echo $((6*7))\r")
	term.expect("30 100")
	term.expect("42")
	// Ctrl-D ends the shell only once its line editor reads the terminal again: typed while the
	// line discipline is still canonical, the EOF is lost when the editor switches to raw mode.
	// The editor sets raw mode before it prints the prompt, so the prompt is the signal.
	term.expect("# ")
	term.send("\x04")
	if code := term.wait(); code != 0 {
		t.Errorf("docker exec -it exit code = %d, want 0", code)
	}
}

// TestKataAttach: docker attach to a running container's terminal.
func TestKataAttach(t *testing.T) {
	requireKata(t)
	name := startDetached(t, "-it", "busybox", "sh")
	term := newTerminal(t, 24, 80, "docker", "attach", name)
	term.send("echo attached-$((1+1))\r")
	term.expect("attached-2")
	term.send("exit 9\r")
	term.wait()
	if code := strings.TrimSpace(docker(t, "", "wait", name).stdout); code != "9" {
		t.Errorf("exit code after attach = %s, want 9", code)
	}
}
