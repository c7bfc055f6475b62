package agentproto

import "context"

// OpWarm asks the agent of a VM that has run no container yet to run one throwaway container of
// its own (its own binary, printing its version) and remove it: a pooled clone does it before it
// waits, so that the guest code every container start runs is already translated (TCG) and paged
// in when a container takes the clone. It leaves the VM as it found it: no container, no mount.
const OpWarm = "warm"

// WarmContainerID names the throwaway container; a host's container never has this ID (the
// agent refuses it while warming, and warming once a container ran).
const WarmContainerID = "kata-warm"

// Warm runs the agent's throwaway container (OpWarm).
func (c *Client) Warm(ctx context.Context) error {
	_, err := c.call(ctx, Request{Op: OpWarm})
	return err
}
