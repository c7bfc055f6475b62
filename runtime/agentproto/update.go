package agentproto

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OpUpdateContainer applies new limits (Request.Resources) to a container's cgroup in the guest
// (docker update). Fields left nil keep their value. The answer's Notes list what the guest could
// not apply, such as the throttle of a block device the guest does not have.
const OpUpdateContainer = "update"

// CgroupParam is the kernel parameter that tells the agent which cgroup layout to give containers:
// "agent.cgroup=v1" on a host on cgroup v1 (the container sees what runc would give it there),
// cgroup v2 otherwise.
const CgroupParam = "agent.cgroup"

// UpdateContainer applies res to the container's cgroup in the guest.
func (c *Client) UpdateContainer(ctx context.Context, containerID string, res *specs.LinuxResources) ([]string, error) {
	resp, err := c.call(ctx, Request{Op: OpUpdateContainer, Container: containerID, Resources: res})
	if err != nil {
		return nil, err
	}
	return resp.Notes, nil
}
