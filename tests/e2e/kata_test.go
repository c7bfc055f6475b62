package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

var (
	kataOnce sync.Once
	kata     *testenv.Kata
	kataErr  error
)

// requireKata builds the shim, the agent and a guest image from Debian's kernel package, writes a
// runtime configuration and registers the runtime "kata" with the test engine, once per test binary.
func requireKata(t *testing.T) *testenv.Kata {
	t.Helper()
	requireEngine(t)
	if os.Geteuid() != 0 {
		missing(t, "the VM runtime needs root (mounts, QEMU, network namespaces)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing(t, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
	kataOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		kata, kataErr = testenv.SetUpKata(ctx, binDir, "kata")
		if kataErr == nil {
			restoreDaemonJSON = kata.Unregister
		}
	})
	if kataErr != nil {
		t.Fatalf("setting up the kata runtime: %v", kataErr)
	}
	return kata
}

// docker runs the docker CLI with optional stdin.
func docker(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command("docker", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}
