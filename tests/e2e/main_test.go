// Package e2e holds the end-to-end tests: the real kata-deploy binary against the real test engine
// (hack/engine.sh up), real QEMU and a real guest kernel. Run them with `make test`.
//
// Without the engine the tests skip, loudly; with KATA_E2E_REQUIRED=1 (as `make test` and CI set)
// a missing prerequisite is a failure instead, so a run cannot pass by skipping.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

var (
	// binDir holds the binaries built once for the whole package.
	binDir string
	// restoreDaemonJSON, once set, puts the test engine's daemon.json back after the tests.
	restoreDaemonJSON func()
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kata-deploy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
	} else {
		code = m.Run()
	}
	// A runtime with a pool of clones (KATA_E2E_POOL) leaves clones waiting for the next
	// container: there is none.
	if err := sandbox.RemovePool(context.Background(), runtimecache.Dir(testenv.StateDir)); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: removing the pool of clones:", err)
		code = 1
	}
	if restoreDaemonJSON != nil {
		restoreDaemonJSON()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries(dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/kata-deploy/kata-deploy/cmd/kata-deploy")
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// requireEngine skips (or fails under KATA_E2E_REQUIRED=1) when the test engine is not up.
func requireEngine(t *testing.T) {
	t.Helper()
	testreq.Engine(t)
}

// missing reports a missing prerequisite.
func missing(t *testing.T, why string) {
	t.Helper()
	testreq.Skipf(t, "%s", why)
}

// result of running a command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a command and returns its output and exit code; it fails the test only if the command
// could not be started.
func run(t *testing.T, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s %v: %v", name, args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// kataDeploy runs the built kata-deploy binary.
func kataDeploy(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, filepath.Join(binDir, "kata-deploy"), args...)
}

func runtimeNumCPU() int { return runtime.NumCPU() }
