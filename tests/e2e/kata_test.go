package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	logShimsOnFailure(t)
	return kata
}

// shimLogged marks the tests whose shim log is already watched (requireKata may run twice in one).
var shimLogged sync.Map

// maxShimLines bounds what a failed test prints of the shims' log.
const maxShimLines = 40

// logShimsOnFailure adds to a failed test's output what the kata shims warned of while it ran
// (the test engine's containerd log): a CI run keeps nothing else of a VM that failed, such as
// the end of its console.
func logShimsOnFailure(t *testing.T) {
	dir := os.Getenv("KATA_TEST_ENGINE_LOGS")
	if _, seen := shimLogged.LoadOrStore(t, true); seen || dir == "" {
		return
	}
	path := filepath.Join(dir, "containerd.log")
	off := logSize(path)
	t.Cleanup(func() {
		shimLogged.Delete(t)
		if !t.Failed() {
			return
		}
		if lines := shimWarnings(logSince(t, path, off)); len(lines) > 0 {
			t.Logf("the kata shims warned, while this test ran (%s):\n%s", path, strings.Join(lines, "\n"))
		}
	})
}

// shimWarnings picks the kata shims' warnings and errors out of containerd's log, the last
// maxShimLines of them, without the warning that every VM under TCG logs.
func shimWarnings(log string) []string {
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		shim := strings.Contains(l, "runtime=io.containerd.kata")
		bad := strings.Contains(l, "level=warning") || strings.Contains(l, "level=error")
		if shim && bad && !strings.Contains(l, "under emulation (TCG)") {
			lines = append(lines, strings.ReplaceAll(l, `\n`, "\n    "))
		}
	}
	return lines[max(0, len(lines)-maxShimLines):]
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

func TestShimWarnings(t *testing.T) {
	log := strings.Join([]string{
		`time="t1" level=info msg="shim disconnected" id=a namespace=moby`,
		`time="t2" level=warning msg="WARNING: running the VM under emulation (TCG), about 10x slower" id=a runtime=io.containerd.kata.v2`,
		`time="t3" level=warning msg="the guest did not answer (x); its console ends with:\n[ 1.0] oops" id=a runtime=io.containerd.kata.v2`,
		`time="t4" level=error msg="failed to delete task" id=a`,
		`time="t5" level=info msg="VM booted" id=a runtime=io.containerd.kata.v2`,
	}, "\n")
	got := shimWarnings(log)
	want := []string{`time="t3" level=warning msg="the guest did not answer (x); its console ends with:` + "\n    " + `[ 1.0] oops" id=a runtime=io.containerd.kata.v2`}
	if !slices.Equal(got, want) {
		t.Errorf("shimWarnings = %q, want %q", got, want)
	}
}
