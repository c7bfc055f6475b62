package shim

import (
	"context"
	"fmt"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// step is one call of the task API (or one event in the fake guest) in a lifecycle test.
type step struct {
	op   string // a task API method in lower case, or "exit": the fake guest ends the process
	id   string // container id
	exec string // exec id, "" for the init
	arg  int    // the signal for kill, the exit status for exit
	want error  // nil, or the errdefs class the call must fail with
	// For state and wait: what they must report. status 0 (UNKNOWN) skips the check.
	status task.Status
	code   int
}

// outcome is what a step observed.
type outcome struct {
	status task.Status
	code   int
	err    error
}

// do runs one step against the harness. Calls that may block legitimately (wait, and exit, which
// waits for the service to see the exit) give up after patience.
func (h *harness) do(ctx context.Context, st step, patience time.Duration) outcome {
	s := h.s
	switch st.op {
	case "create":
		_, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: st.id, Bundle: h.bundle})
		return outcome{err: err}
	case "start":
		_, err := s.Start(ctx, &taskAPI.StartRequest{ID: st.id, ExecID: st.exec})
		return outcome{err: err}
	case "kill":
		_, err := s.Kill(ctx, &taskAPI.KillRequest{ID: st.id, ExecID: st.exec, Signal: uint32(st.arg)})
		return outcome{err: err}
	case "delete":
		_, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: st.id, ExecID: st.exec})
		return outcome{err: err}
	case "exec":
		return outcome{err: h.exec(ctx, st.id, st.exec)}
	case "state":
		r, err := s.State(ctx, &taskAPI.StateRequest{ID: st.id, ExecID: st.exec})
		if err != nil {
			return outcome{err: err}
		}
		return outcome{status: r.Status, code: int(r.ExitStatus)}
	case "wait":
		return h.wait(ctx, st, patience)
	case "exit":
		if sb := h.sb(); sb != nil {
			sb.exit(st.exec, st.arg)
		}
		return h.wait(ctx, st, patience)
	}
	return outcome{err: h.doOther(ctx, st)}
}

// doOther runs the calls that only report an error.
func (h *harness) doOther(ctx context.Context, st step) error {
	s := h.s
	var err error
	switch st.op {
	case "pids":
		_, err = s.Pids(ctx, &taskAPI.PidsRequest{ID: st.id})
	case "stats":
		_, err = s.Stats(ctx, &taskAPI.StatsRequest{ID: st.id})
	case "pause":
		_, err = s.Pause(ctx, &taskAPI.PauseRequest{ID: st.id})
	case "resume":
		_, err = s.Resume(ctx, &taskAPI.ResumeRequest{ID: st.id})
	case "closeio":
		_, err = s.CloseIO(ctx, &taskAPI.CloseIORequest{ID: st.id, ExecID: st.exec, Stdin: true})
	case "resize":
		_, err = s.ResizePty(ctx, &taskAPI.ResizePtyRequest{ID: st.id, ExecID: st.exec, Width: 80, Height: 24})
	case "connect":
		_, err = s.Connect(ctx, &taskAPI.ConnectRequest{ID: st.id})
	case "shutdown":
		_, err = s.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: st.id})
	default:
		panic(fmt.Sprintf("unknown step %q", st.op))
	}
	return err
}

func (h *harness) exec(ctx context.Context, id, execID string) error {
	spec, err := typeurl.MarshalAnyToProto(&specs.Process{Args: []string{"sh"}, Cwd: "/"})
	if err != nil {
		return fmt.Errorf("encoding the exec spec: %w", err)
	}
	_, err = h.s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: id, ExecID: execID, Spec: spec})
	return err
}

func (h *harness) wait(ctx context.Context, st step, patience time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	r, err := h.s.Wait(ctx, &taskAPI.WaitRequest{ID: st.id, ExecID: st.exec})
	if err != nil {
		return outcome{err: err}
	}
	return outcome{code: int(r.ExitStatus)}
}
