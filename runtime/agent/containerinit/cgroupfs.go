package containerinit

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// enterCgroupNamespace gives the container the cgroup namespace its spec asks for, rooted at the
// cgroup the agent placed the process in before it sent the config (as runc does after joining
// the container's cgroup). Without a cgroup from the agent, nothing is unshared: the namespace
// would be rooted at the agent's own cgroup.
func enterCgroupNamespace(cfg *Config) error {
	if !cfg.Cgroup || cfg.Spec == nil || cfg.Spec.Linux == nil {
		return nil
	}
	for _, ns := range cfg.Spec.Linux.Namespaces {
		if ns.Type != specs.CgroupNamespace {
			continue
		}
		if ns.Path != "" {
			return fmt.Errorf("joining the cgroup namespace %s is not supported: each VM container has its own", ns.Path)
		}
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("create the container's cgroup namespace: %w", err)
		}
	}
	return nil
}

// withoutCgroupMounts leaves the spec's cgroup mounts out when the agent gave the container no
// cgroup: the guest's hierarchy would show the agent's, not the container's.
func withoutCgroupMounts(spec *specs.Spec, w *warnings) *specs.Spec {
	out := *spec
	out.Mounts = nil
	for _, m := range spec.Mounts {
		if isCgroupMount(m) {
			w.add("skipped the %s mount at %s: the guest gave the container no cgroup", m.Type, m.Destination)
			continue
		}
		out.Mounts = append(out.Mounts, m)
	}
	return &out
}

func isCgroupMount(m specs.Mount) bool { return m.Type == "cgroup" || m.Type == "cgroup2" }

// mountCgroup mounts the guest's cgroup v2 hierarchy at target, as runc does on a cgroup v2
// host for both "cgroup" and "cgroup2" mounts: in the container's cgroup namespace its root is
// the container's cgroup. The spec's options decide ro (Docker's default) or rw
// (--security-opt writable-cgroups).
func mountCgroup(target, dest string, opts mountOptions) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", dest, err)
	}
	flags := opts.flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	if err := unix.Mount("cgroup2", target, "cgroup2", flags, ""); err != nil {
		return fmt.Errorf("mount the container's cgroup at %s: %w", dest, err)
	}
	return nil
}
