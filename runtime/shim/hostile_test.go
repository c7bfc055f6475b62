package shim

import (
	"context"
	"syscall"
	"testing"
	"time"

	cgroupstats "github.com/containerd/cgroups/v3/cgroup1/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/typeurl/v2"
)

// TestSilentGuestCannotWedgeTheShim: a guest that stops answering (paused, or a hostile agent)
// holds no call Docker makes for long: stats answer at once from the last figures, and SIGKILL
// powers the VM off from the host, after which the exit is reported and Delete finishes.
func TestSilentGuestCannotWedgeTheShim(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, h *harness)
	}{
		{"paused VM", func(t *testing.T, h *harness) {
			if _, err := h.s.Pause(context.Background(), &taskAPI.PauseRequest{ID: "c1"}); err != nil {
				t.Fatal(err)
			}
			h.sb().mu.Lock()
			h.sb().silent = true // a paused guest answers nothing
			h.sb().mu.Unlock()
		}},
		{"agent that stopped answering", func(t *testing.T, h *harness) {
			h.sb().mu.Lock()
			h.sb().silent = true
			h.sb().mu.Unlock()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background() // Docker's calls carry no deadline
			if _, err := h.s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: h.bundle}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.s.Stats(ctx, &taskAPI.StatsRequest{ID: "c1"}); err != nil { // caches figures
				t.Fatal(err)
			}
			tt.setup(t, h)

			start := time.Now()
			resp, err := h.s.Stats(ctx, &taskAPI.StatsRequest{ID: "c1"})
			if err != nil {
				t.Fatalf("stats: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("stats took %s", d)
			}
			v, err := typeurl.UnmarshalAny(resp.Stats)
			if err != nil {
				t.Fatal(err)
			}
			if m := v.(*cgroupstats.Metrics); m.Memory.Usage.Usage != 4096 {
				t.Errorf("stats of a silent guest: memory %d, want the last figure 4096", m.Memory.Usage.Usage)
			}

			start = time.Now()
			if _, err := h.s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL)}); err != nil {
				t.Fatalf("kill: %v", err)
			}
			if d := time.Since(start); d > killGrace+2*time.Second {
				t.Errorf("kill took %s", d)
			}
			h.sb().mu.Lock()
			powerOffs := h.sb().powerOffs
			h.sb().mu.Unlock()
			if powerOffs != 1 {
				t.Errorf("VM powered off %d times, want 1", powerOffs)
			}
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			w, err := h.s.Wait(wctx, &taskAPI.WaitRequest{ID: "c1"})
			if err != nil {
				t.Fatalf("wait after SIGKILL: %v", err)
			}
			if w.ExitStatus != 128+uint32(syscall.SIGKILL) {
				t.Errorf("exit status %d, want 137", w.ExitStatus)
			}
			start = time.Now()
			if _, err := h.s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("delete took %s", d)
			}
		})
	}
}
