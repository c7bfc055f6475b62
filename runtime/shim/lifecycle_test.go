package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

const (
	created = task.Status_CREATED
	running = task.Status_RUNNING
	stopped = task.Status_STOPPED
	sigkill = int(syscall.SIGKILL)
	sigterm = int(syscall.SIGTERM)
)

func TestTaskLifecycle(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		// events are the kinds published, in order (see eventKinds); nil skips the check.
		events []string
		// destroys is how often the VM was powered off at the end.
		destroys int
	}{
		{
			name: "create start wait delete",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "state", id: "c1", status: created},
				{op: "start", id: "c1"},
				{op: "state", id: "c1", status: running},
				{op: "exit", id: "c1", arg: 3, code: 3},
				{op: "wait", id: "c1", code: 3},
				{op: "state", id: "c1", status: stopped, code: 3},
				{op: "delete", id: "c1"},
				{op: "state", id: "c1", want: errdefs.ErrNotFound},
			},
			events:   []string{"create", "start", "exit c1", "delete"},
			destroys: 1,
		},
		{
			name: "kill before start ends the created container",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "kill", id: "c1", arg: sigkill},
				{op: "state", id: "c1", status: stopped, code: 128 + sigkill},
				{op: "wait", id: "c1", code: 128 + sigkill},
				{op: "start", id: "c1", want: errdefs.ErrFailedPrecondition},
				{op: "delete", id: "c1"},
			},
			events:   []string{"create", "exit c1", "delete"},
			destroys: 1,
		},
		{
			name: "delete while running is refused",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "start", id: "c1"},
				{op: "delete", id: "c1", want: errdefs.ErrFailedPrecondition},
				{op: "kill", id: "c1", arg: sigterm},
				{op: "wait", id: "c1", code: 128 + sigterm},
				{op: "delete", id: "c1"},
			},
			events:   []string{"create", "start", "exit c1", "delete"},
			destroys: 1,
		},
		{
			name: "exec add start wait kill delete",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "exec", id: "c1", exec: "e1", want: errdefs.ErrFailedPrecondition}, // init not running
				{op: "start", id: "c1"},
				{op: "exec", id: "c1", exec: "e1"},
				{op: "exec", id: "c1", exec: "e1", want: errdefs.ErrAlreadyExists},
				{op: "state", id: "c1", exec: "e1", status: created},
				{op: "start", id: "c1", exec: "e1"},
				{op: "state", id: "c1", exec: "e1", status: running},
				{op: "delete", id: "c1", exec: "e1", want: errdefs.ErrFailedPrecondition},
				{op: "kill", id: "c1", exec: "e1", arg: sigterm},
				{op: "wait", id: "c1", exec: "e1", code: 128 + sigterm},
				{op: "state", id: "c1", exec: "e1", status: stopped, code: 128 + sigterm},
				{op: "delete", id: "c1", exec: "e1"},
				{op: "state", id: "c1", exec: "e1", want: errdefs.ErrNotFound},
				{op: "state", id: "c1", status: running},
				{op: "kill", id: "c1", arg: sigkill},
				{op: "wait", id: "c1", code: 128 + sigkill},
				{op: "delete", id: "c1"},
			},
			events:   []string{"create", "start", "exec-added e1", "exec-started e1", "exit e1", "exit c1", "delete"},
			destroys: 1,
		},
		{
			name: "the init's exit ends the exec processes",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "start", id: "c1"},
				{op: "exec", id: "c1", exec: "e1"},
				{op: "start", id: "c1", exec: "e1"},
				{op: "exit", id: "c1", arg: 0},
				{op: "wait", id: "c1", exec: "e1", code: 128 + sigkill},
				{op: "delete", id: "c1"},
			},
			destroys: 1,
		},
		{
			name: "double start is refused",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "start", id: "c1"},
				{op: "start", id: "c1", want: errdefs.ErrFailedPrecondition},
				{op: "exec", id: "c1", exec: "e1"},
				{op: "start", id: "c1", exec: "e1"},
				{op: "start", id: "c1", exec: "e1", want: errdefs.ErrFailedPrecondition},
			},
			events: []string{"create", "start", "exec-added e1", "exec-started e1"},
		},
		{
			name: "one container per shim",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "create", id: "c2", want: errdefs.ErrAlreadyExists},
				{op: "create", id: "c1", want: errdefs.ErrAlreadyExists},
				{op: "state", id: "c2", want: errdefs.ErrNotFound},
			},
			events: []string{"create"},
		},
		{
			name: "kill after exit finds no process",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "start", id: "c1"},
				{op: "exit", id: "c1", arg: 0},
				{op: "kill", id: "c1", arg: sigkill, want: errdefs.ErrNotFound},
				{op: "wait", id: "c1", code: 0},
			},
			events:   []string{"create", "start", "exit c1"},
			destroys: 1,
		},
		{
			name: "a deleted id can be created again",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "start", id: "c1"},
				{op: "exit", id: "c1", arg: 1, code: 1},
				{op: "delete", id: "c1"},
				{op: "create", id: "c1"},
				{op: "state", id: "c1", status: created},
			},
			events: []string{"create", "start", "exit c1", "delete", "create"},
		},
		{
			name: "pause and resume a running container only",
			steps: []step{
				{op: "create", id: "c1"},
				{op: "pause", id: "c1", want: errdefs.ErrFailedPrecondition},
				{op: "start", id: "c1"},
				{op: "pause", id: "c1"},
				{op: "resume", id: "c1"},
				{op: "exit", id: "c1", arg: 0},
				{op: "resume", id: "c1", want: errdefs.ErrFailedPrecondition},
				{op: "stats", id: "c1", want: errdefs.ErrNotFound},
			},
			events: []string{"create", "start", "paused", "resumed", "exit c1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			for i, st := range tt.steps {
				got := h.do(context.Background(), st, 5*time.Second)
				if err := st.check(got); err != nil {
					t.Fatalf("step %d %+v: %v", i, st, err)
				}
			}
			if tt.events != nil {
				h.pub.waitFor(t, fmt.Sprint(tt.events), func(e []events.Event) bool { return slices.Equal(eventKinds(e), tt.events) })
			}
			if tt.destroys > 0 {
				waitUntil(t, "the VM powered off", func() bool { return h.sb().destroyCount() == tt.destroys })
			}
		})
	}
}

// check compares what a step observed with what it expects.
func (st step) check(got outcome) error {
	switch {
	case st.want == nil && got.err != nil:
		return fmt.Errorf("unexpected error: %w", got.err)
	case st.want != nil && !errors.Is(got.err, st.want):
		return fmt.Errorf("error %v, want %v", got.err, st.want)
	case st.status != task.Status_UNKNOWN && got.status != st.status:
		return fmt.Errorf("status %v, want %v", got.status, st.status)
	case (st.op == "wait" || st.op == "exit" || st.op == "state") && got.err == nil && got.code != st.code:
		return fmt.Errorf("exit status %d, want %d", got.code, st.code)
	}
	return nil
}

// eventKinds names the published events: "create", "exit <id>", ...
func eventKinds(es []events.Event) []string {
	var kinds []string
	for _, e := range es {
		switch e := e.(type) {
		case *eventstypes.TaskCreate:
			kinds = append(kinds, "create")
		case *eventstypes.TaskStart:
			kinds = append(kinds, "start")
		case *eventstypes.TaskExit:
			kinds = append(kinds, "exit "+e.ID)
		case *eventstypes.TaskDelete:
			kinds = append(kinds, "delete")
		case *eventstypes.TaskExecAdded:
			kinds = append(kinds, "exec-added "+e.ExecID)
		case *eventstypes.TaskExecStarted:
			kinds = append(kinds, "exec-started "+e.ExecID)
		case *eventstypes.TaskPaused:
			kinds = append(kinds, "paused")
		case *eventstypes.TaskResumed:
			kinds = append(kinds, "resumed")
		default:
			kinds = append(kinds, fmt.Sprintf("%T", e))
		}
	}
	return kinds
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUnknownIDsAreNotFound(t *testing.T) {
	ops := []string{"state", "start", "kill", "delete", "wait", "exec", "pids", "stats", "pause", "resume", "closeio", "resize"}
	h := newHarness(t)
	for _, op := range ops {
		if err := h.do(context.Background(), step{op: op, id: "nope", exec: "x", arg: sigkill}, time.Second).err; !errdefs.IsNotFound(err) {
			t.Errorf("%s before create: %v, want NotFound", op, err)
		}
	}
	if err := h.do(context.Background(), step{op: "create", id: "c1"}, time.Second).err; err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if err := h.do(context.Background(), step{op: op, id: "c2", arg: sigkill}, time.Second).err; !errdefs.IsNotFound(err) {
			t.Errorf("%s of another container: %v, want NotFound", op, err)
		}
		if op == "exec" || op == "pids" || op == "stats" || op == "pause" || op == "resume" {
			continue // these do not take an exec id
		}
		if err := h.do(context.Background(), step{op: op, id: "c1", exec: "nope", arg: sigkill}, time.Second).err; !errdefs.IsNotFound(err) {
			t.Errorf("%s of an unknown exec: %v, want NotFound", op, err)
		}
	}
}

// TestExitAfterOutputDrained: Docker stops reading a container's output at TaskExit, so the
// event must follow the last byte, and be published once however often the exit is observed.
func TestExitAfterOutputDrained(t *testing.T) {
	h := newHarness(t)
	fifo := filepath.Join(t.TempDir(), "c1-stdout")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	output := make(chan string, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			output <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		output <- string(b)
	}()
	ctx := context.Background()
	if _, err := h.s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: h.bundle, Stdout: fifo}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	guestOut := h.sb().stream("", agentproto.StreamStdout)
	if _, err := guestOut.Write([]byte("last words\n")); err != nil {
		t.Fatal(err)
	}
	h.sb().exit("", 0)
	time.Sleep(100 * time.Millisecond) // the service sees the exit; the stream is still open
	if n := h.pub.exits("c1"); n != 0 {
		t.Fatalf("TaskExit published while the output stream was still open")
	}
	guestOut.Close()
	h.pub.waitFor(t, "TaskExit", func(e []events.Event) bool { return slices.Contains(eventKinds(e), "exit c1") })
	if got := <-output; got != "last words\n" {
		t.Errorf("stdout FIFO got %q", got)
	}
	for _, st := range []step{{op: "wait", id: "c1"}, {op: "kill", id: "c1", arg: sigkill}, {op: "delete", id: "c1"}} {
		h.do(ctx, st, time.Second)
	}
	h.pub.waitFor(t, "TaskDelete", func(e []events.Event) bool { return slices.Contains(eventKinds(e), "delete") })
	if n := h.pub.exits("c1"); n != 1 {
		t.Errorf("TaskExit published %d times: %s", n, strings.Join(eventKinds(h.pub.snapshot()), ", "))
	}
}

// TestCreateWhileBooting: a VM boots for seconds; a second Create meanwhile must be refused, not
// boot a second VM that the first would then replace and leak.
func TestCreateWhileBooting(t *testing.T) {
	h := newHarness(t)
	booting, release := make(chan struct{}), make(chan struct{})
	h.onBoot = func() {
		close(booting)
		<-release
	}
	first := make(chan error, 1)
	go func() { first <- h.do(context.Background(), step{op: "create", id: "c1"}, time.Second).err }()
	<-booting
	if err := h.do(context.Background(), step{op: "create", id: "c2"}, time.Second).err; !errdefs.IsAlreadyExists(err) {
		t.Errorf("create during a boot: %v, want AlreadyExists", err)
	}
	if err := h.do(context.Background(), step{op: "shutdown"}, time.Second).err; err != nil {
		t.Errorf("shutdown during a boot: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first create: %v", err)
	}
	if got := h.do(context.Background(), step{op: "state", id: "c1"}, time.Second); got.err != nil || got.status != created {
		t.Errorf("state after the boot: %+v", got)
	}
}

// TestExecKillWaitsForOutput: Docker reads a health-check probe's output as soon as the SIGKILL
// of the timed-out probe returns, so the kill returns only once the output the probe wrote before
// it died has reached its FIFO (here it is still on its way from the guest when the kill lands).
func TestExecKillWaitsForOutput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for _, st := range []step{{op: "create", id: "c1"}, {op: "start", id: "c1"}} {
		if err := h.do(ctx, st, time.Second).err; err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(t.TempDir(), "e1-stdout")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	output := make(chan string, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			output <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		output <- string(b)
	}()
	spec, err := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"sh"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Stdout: fifo, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Start(ctx, &taskAPI.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	guestOut := h.sb().stream("e1", agentproto.StreamStdout)
	go func() {
		time.Sleep(200 * time.Millisecond) // the probe's output, still on its way
		guestOut.Write([]byte("logs1 logs2 logs3\n"))
		guestOut.Close()
	}()
	if _, err := h.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", ExecID: "e1", Signal: uint32(sigkill)}); err != nil {
		t.Fatal(err)
	}
	st, err := h.s.State(ctx, &taskAPI.StateRequest{ID: "c1", ExecID: "e1"})
	if err != nil || st.Status != stopped {
		t.Fatalf("right after the SIGKILL returned, the exec is %v (%v), want stopped with its output delivered", st.GetStatus(), err)
	}
	if got := <-output; got != "logs1 logs2 logs3\n" {
		t.Errorf("stdout FIFO got %q", got)
	}
}
