package agent

import (
	"context"
	"errors"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// containerCgroup prepares the container's cgroup v2 when the executor gives containers one: the
// spec's limits go there, the first process joins it (after what *confine already does), and
// containerinit is told to mount it for the spec's cgroup mounts. It returns nil without one.
func (e *NSExecutor) containerCgroup(id string, spec *specs.Spec, cfg *containerinit.Config, confine *func(pid int) error) (containerCgroups, error) {
	if !e.opts.ResourceCgroup {
		return nil, nil
	}
	rc, err := e.resourceCgroups()
	if err != nil {
		return nil, err
	}
	var res *specs.LinuxResources
	if spec.Linux != nil {
		res = spec.Linux.Resources
	}
	before := *confine
	*confine = func(pid int) error {
		if before != nil {
			if err := before(pid); err != nil {
				return err
			}
		}
		notes, err := rc.create(id, res, pid)
		for _, n := range notes {
			e.log.Infof("container %s: a limit was not applied in the guest: %s", id, n)
		}
		return err
	}
	cfg.Cgroup = true
	if cfg.CgroupV1 = rc.v1Hierarchies(); cfg.CgroupV1 != nil && e.opts.DeviceCgroup {
		cfg.CgroupV1 = append(cfg.CgroupV1, "devices")
	}
	return rc, nil
}

// joinResourceCgroup adds joining the container's cgroup v2 to what *confine does.
func (e *NSExecutor) joinResourceCgroup(name string, confine *func(pid int) error) {
	e.mu.Lock()
	rc := e.res
	e.mu.Unlock()
	if rc == nil || name == "" {
		return
	}
	before := *confine
	*confine = func(pid int) error {
		if before != nil {
			if err := before(pid); err != nil {
				return err
			}
		}
		return rc.join(name, pid)
	}
}

// resourceCgroups opens the guest's cgroup hierarchies on first use.
func (e *NSExecutor) resourceCgroups() (containerCgroups, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.res != nil {
		return e.res, nil
	}
	var rc containerCgroups
	var err error
	if e.opts.CgroupV1 {
		rc, err = openV1Cgroups(e.log)
	} else {
		rc, err = openResourceCgroups()
	}
	if err != nil {
		return nil, err
	}
	e.res = rc
	return rc, nil
}

// UpdateResources applies new limits to the cgroup of init's container (docker update).
func (e *NSExecutor) UpdateResources(_ context.Context, init Process, res *specs.LinuxResources) ([]string, error) {
	ip, ok := init.(*nsProcess)
	if !ok {
		return nil, errors.New("update: init process is not from this executor")
	}
	e.mu.Lock()
	rc := e.res
	e.mu.Unlock()
	if ip.resCgroup == "" || rc == nil {
		return nil, errors.New("update: the container has no cgroup in the guest (the agent runs without resource cgroups)")
	}
	return rc.update(ip.resCgroup, res)
}
