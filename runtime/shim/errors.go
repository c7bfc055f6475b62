package shim

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// pkg/shim installs the interceptor of every TTRPC plugin that offers one on the server it
// registers the task service on.
var _ shim.TTRPCServerUnaryOptioner = (*service)(nil)

// UnaryServerInterceptor makes the task service's errors cross ttrpc with their class. ttrpc sends
// any error that is not a gRPC status as Unknown, so containerd could not tell a NotFound (which
// its delete path tolerates) from a real failure.
func (s *service) UnaryServerInterceptor() ttrpc.UnaryServerInterceptor {
	return errorsToGRPC
}

// errorsToGRPC converts an errdefs error (wrapped with %w anywhere in the service) to the gRPC
// status containerd decodes with errgrpc.ToNative; the message is kept.
func errorsToGRPC(ctx context.Context, unmarshal ttrpc.Unmarshaler, _ *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	resp, err := method(ctx, unmarshal)
	if err != nil {
		return resp, errgrpc.ToGRPC(err)
	}
	return resp, nil
}
