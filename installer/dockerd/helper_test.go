package dockerd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// helperEnv makes the test binary act as a stand-in dockerd: "listen=PATH" listens on a unix
// socket itself, "hold" only keeps the files it inherited open. Started through a symlink named
// "dockerd", its comm is "dockerd", as the real daemon's is.
const helperEnv = "KATA_DEPLOY_DOCKERD_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	if path, ok := strings.CutPrefix(mode, "listen="); ok {
		l, err := net.Listen("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer l.Close()
		go func() { // accept and drop, like a daemon that has nothing to say
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // run until the test closes stdin or kills us
	return 0
}

// startFakeDockerd runs the helper as "dockerd" with mode, extra environment and inherited files,
// waits until it is ready, and stops it when the test ends.
func startFakeDockerd(t *testing.T, mode string, env []string, files ...*os.File) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "dockerd")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "-H", "fd://", "--config-file", "/etc/docker/test.json")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("fake dockerd did not start: %q, %v", line, err)
	}
	return cmd
}
