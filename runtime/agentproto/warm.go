package agentproto

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
// The throwaway container is confined like `like` (its capabilities, no_new_privs, masked and
// read-only paths; nothing else of it is used) and by the compiled filter seccomp, as a host's
// container is (CreateContainerRequest.Seccomp), so that the code confining a host's container
// is warm too; nil: no confinement.
func (c *Client) Warm(ctx context.Context, like *specs.Spec, seccomp *Seccomp, shares ...Share) error {
	_, err := c.call(ctx, Request{Op: OpWarm, Shares: shares, Spec: like, Seccomp: seccomp})
	return err
}
