package agentproto

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OpUpdateContainer applies new limits (Request.Resources) to a container's cgroup in the guest
// (docker update). Fields left nil keep their value. The answer's Notes list what the guest could
// not apply, such as the throttle of a block device the guest does not have.
const OpUpdateContainer = "update"

// UpdateContainer applies res to the container's cgroup in the guest.
func (c *Client) UpdateContainer(ctx context.Context, containerID string, res *specs.LinuxResources) ([]string, error) {
	resp, err := c.call(ctx, Request{Op: OpUpdateContainer, Container: containerID, Resources: res})
	if err != nil {
		return nil, err
	}
	return resp.Notes, nil
}
