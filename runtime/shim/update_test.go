package shim

import (
	"context"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// containerd sends the update's resources as the JSON of LinuxResources in an Any: they reach
// the sandbox decoded; an update without resources does not reach it.
func TestUpdateDecodesResources(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: h.bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1"}); err != nil {
		t.Fatalf("update without resources: %v", err)
	}
	quota := int64(15000)
	a, err := typeurl.MarshalAnyToProto(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: a}); err != nil {
		t.Fatalf("update: %v", err)
	}
	sb := h.sb()
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if len(sb.updates) != 1 || sb.updates[0].CPU == nil || *sb.updates[0].CPU.Quota != quota {
		t.Errorf("updates reaching the sandbox: %+v", sb.updates)
	}
}
