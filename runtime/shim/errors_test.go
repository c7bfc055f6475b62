package shim

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// serveTTRPC serves the harness's task service on a unix socket, as pkg/shim does, and returns a
// client of it.
func serveTTRPC(t *testing.T, h *harness, opts ...ttrpc.ServerOpt) taskAPI.TTRPCTaskService {
	t.Helper()
	server, err := ttrpc.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.RegisterTTRPC(server); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "shim.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve(context.Background(), l)
	t.Cleanup(func() { server.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	return taskAPI.NewTTRPCTaskClient(client)
}

func TestErrorClassesCrossTTRPC(t *testing.T) {
	h := newHarness(t)
	c := serveTTRPC(t, h, ttrpc.WithUnaryServerInterceptor(h.s.UnaryServerInterceptor()))
	ctx := context.Background()

	_, err := c.Delete(ctx, &taskAPI.DeleteRequest{ID: "gone"})
	if native := errgrpc.ToNative(err); !errdefs.IsNotFound(native) || !strings.Contains(native.Error(), "container gone") {
		t.Errorf("delete of an unknown task: %v (native %v), want NotFound naming the container", err, native)
	}
	if _, err := c.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: h.bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		call func() error
		is   func(error) bool
	}{
		{"second create", func() error { _, err := c.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c2"}); return err }, errdefs.IsAlreadyExists},
		{"delete while running", func() error { _, err := c.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); return err }, errdefs.IsFailedPrecondition},
		{"update with resources that are not OCI", func() error {
			_, err := c.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: &ptypes.Any{TypeUrl: "x", Value: []byte("{")}})
			return err
		}, errdefs.IsInvalidArgument},
		{"unknown exec", func() error { _, err := c.State(ctx, &taskAPI.StateRequest{ID: "c1", ExecID: "x"}); return err }, errdefs.IsNotFound},
	}
	for _, tt := range checks {
		if err := tt.call(); !tt.is(errgrpc.ToNative(err)) {
			t.Errorf("%s: %v arrived as %v", tt.name, err, errgrpc.ToNative(err))
		}
	}
}

// Without the interceptor ttrpc loses the class: this is what the interceptor is for.
func TestTTRPCWithoutInterceptorLosesTheClass(t *testing.T) {
	h := newHarness(t)
	c := serveTTRPC(t, h)
	_, err := c.State(context.Background(), &taskAPI.StateRequest{ID: "gone"})
	if err == nil || errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("got %v: ttrpc now keeps the class itself, the interceptor may be redundant", err)
	}
}

// pkg/shim finds the interceptor on the plugin's instance: what NewTaskService returns.
func TestTaskServiceOffersTheInterceptor(t *testing.T) {
	ctx, sd := shutdown.WithShutdown(context.Background())
	defer sd.Shutdown()
	svc, err := NewTaskService(ctx, &fakePublisher{}, sd)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.(shim.TTRPCServerUnaryOptioner); !ok {
		t.Errorf("%T does not offer a unary server interceptor", svc)
	}
}
