package shim

import (
	"context"
	"encoding/json"
	"fmt"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// update applies new resources to the container (docker update). containerd sends them as the
// JSON of the OCI LinuxResources, as runc's shim reads them; annotations are not used.
func (s *service) update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	res, err := decodeResources(r)
	if err != nil {
		return nil, err
	}
	if res == nil {
		return empty, nil
	}
	if err := c.sb.UpdateResources(ctx, res); err != nil {
		return nil, fmt.Errorf("updating the resources of VM container %s: %w", r.ID, err)
	}
	return empty, nil
}

func decodeResources(r *taskAPI.UpdateTaskRequest) (*specs.LinuxResources, error) {
	if r.Resources == nil || len(r.Resources.GetValue()) == 0 {
		return nil, nil
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, fmt.Errorf("%w: the resources of an update are not OCI LinuxResources (%s): %v", errdefs.ErrInvalidArgument, r.Resources.GetTypeUrl(), err)
	}
	return &res, nil
}
