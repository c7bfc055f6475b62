package agentproto

import "context"

// OpWarm asks the agent of a VM that has run no container yet to run one throwaway container of
// its own (its own binary, printing its version) and remove it: a pooled clone does it before it
// waits, so that the guest code every container start runs is already translated (TCG) and paged
// in when a container takes the clone. It leaves no container behind, and no mount but the
// shares the request names.
const OpWarm = "warm"

// WarmContainerID names the throwaway container; a host's container never has this ID (the
// agent refuses it while warming, and warming once a container ran).
const WarmContainerID = "kata-warm"

// Warm runs the agent's throwaway container (OpWarm). The shares given are mounted first, and
// stay: a container's create that names the same share finds it mounted (a pooled clone mounts
// its export while it waits, the container's files appear below it later).
func (c *Client) Warm(ctx context.Context, shares ...Share) error {
	_, err := c.call(ctx, Request{Op: OpWarm, Shares: shares})
	return err
}
