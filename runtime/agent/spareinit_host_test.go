package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agent"
	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// TestSpareInitOnHost: the init started ahead (PrepareInit) becomes the next container's init;
// one that no longer fits (the container wants a terminal, the mount table changed) is killed
// and a new init runs the container; Shutdown kills a spare left over.
func TestSpareInitOnHost(t *testing.T) {
	testreq.Root(t)
	needStaticBusybox(t)
	root := t.TempDir()
	buildRootfs(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exec, c := hostAgent(ctx, t)
	// runInit runs a container to its exit and returns its init's pid.
	runInit := func(id string, terminal bool) int {
		t.Helper()
		spec := dockerSpecAt(root, "true")
		spec.Process.Terminal = terminal
		if err := c.CreateContainer(ctx, agentproto.CreateContainerRequest{ID: id, Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		pid, err := c.Start(ctx, id, "")
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if st, err := c.Wait(ctx, id, ""); err != nil || st != 0 {
			t.Fatalf("%s: exit %d, %v", id, st, err)
		}
		return pid
	}

	spare := prepareSpare(t, exec)
	if pid := runInit("fits", false); pid != spare {
		t.Errorf("the container's init is pid %d, want the spare %d", pid, spare)
	}

	spare = prepareSpare(t, exec)
	if pid := runInit("terminal", true); pid == spare {
		t.Errorf("a container with a terminal took the spare init (pid %d), whose stdio are pipes", pid)
	}
	awaitGone(t, spare)

	spare = prepareSpare(t, exec)
	exec.MountChangedForTest()
	if pid := runInit("mounted", false); pid == spare {
		t.Errorf("a container took the spare init (pid %d) started before the mount table changed", pid)
	}
	awaitGone(t, spare)

	// A spare replaced by another is killed.
	spare = prepareSpare(t, exec)
	next := prepareSpare(t, exec)
	awaitGone(t, spare)

	if err := exec.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, next)
}

// prepareSpare starts a spare init and returns its pid: the one child of this process that runs
// containerinit and did not before.
func prepareSpare(t *testing.T, exec *agent.NSExecutor) int {
	t.Helper()
	before := initChildren(t)
	if err := exec.PrepareInit(); err != nil {
		t.Fatal(err)
	}
	var started []int
	for pid := range initChildren(t) {
		if !before[pid] {
			started = append(started, pid)
		}
	}
	if len(started) != 1 {
		t.Fatalf("PrepareInit started %d containerinit processes (%v), want 1", len(started), started)
	}
	return started[0]
}

// initChildren are the children of this process that run containerinit.
func initChildren(t *testing.T) map[int]bool {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	kids := map[int]bool{}
	for _, st := range stats {
		data, err := os.ReadFile(st)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its last ')'.
		fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && args[1] == containerinit.Arg {
			kids[pid] = true
		}
	}
	return kids
}

// awaitGone waits until pid has exited and was reaped.
func awaitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the spare init %d is still there", pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
