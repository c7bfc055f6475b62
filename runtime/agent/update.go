package agent

import (
	"context"
	"errors"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// resourceUpdater is an Executor that can change a running container's limits.
type resourceUpdater interface {
	UpdateResources(ctx context.Context, init Process, res *specs.LinuxResources) (notes []string, err error)
}

// update applies new limits to a container (docker update).
func (s *Server) update(ctx context.Context, req agentproto.Request) ([]string, error) {
	c, _, err := s.lookup(req.Container, "")
	if err != nil {
		return nil, err
	}
	if req.Resources == nil {
		return nil, nil
	}
	u, ok := s.cfg.Executor.(resourceUpdater)
	if !ok {
		return nil, errors.New("this agent cannot change a container's limits")
	}
	if c.init.exited() {
		return nil, errors.New("the container has exited")
	}
	notes, err := u.UpdateResources(ctx, c.init.p, req.Resources)
	for _, n := range notes {
		s.cfg.Log.Infof("container %s: a limit was not applied in the guest: %s", c.id, n)
	}
	return notes, err
}
