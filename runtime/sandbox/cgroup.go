package sandbox

import (
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/hostcgroup"
)

// cgroupRecord is the file in the state directory that names the host cgroup for Cleanup.
const cgroupRecord = "cgroup.json"

// hostCgroup prepares the container's host cgroup (spec.Linux.CgroupsPath) with the container's
// limits translated for a VM of memoryMiB; QEMU and virtiofsd are placed in it as they start.
func hostCgroup(opts Options, stateDir string, memoryMiB int) (*hostcgroup.Manager, error) {
	var cgroupsPath string
	var res *specs.LinuxResources
	if opts.Spec.Linux != nil {
		cgroupsPath, res = opts.Spec.Linux.CgroupsPath, opts.Spec.Linux.Resources
	}
	p, err := hostcgroup.ParsePath(cgroupsPath, opts.ID)
	if err != nil {
		return nil, fmt.Errorf("the container's cgroup: %w", err)
	}
	return hostcgroup.New(p, hostcgroup.Resources(res, memoryMiB), filepath.Join(stateDir, cgroupRecord)), nil
}

// applyResources sets the host cgroup's limits from the container's new resources (docker
// update). The VM's RAM is fixed at boot: the memory limit stays derived from it.
func (s *Sandbox) applyResources(r *specs.LinuxResources) error {
	if s.cgroup == nil {
		return nil
	}
	return s.cgroup.Update(hostcgroup.Resources(r, s.memoryMiB))
}
