package containerinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// cgroupView is how the container's cgroup mounts show its cgroup: cgroup v2 or the listed
// cgroup v1 hierarchies, rooted at the container's own cgroup as runc roots them.
type cgroupView struct {
	v1 []string // mount options of the v1 hierarchies; empty: cgroup v2
	// inNamespace: the process is in a cgroup namespace rooted at its cgroup already (the spec
	// asked for one); otherwise the mounts are made in a temporary one.
	inNamespace bool
}

// enterCgroupNamespace gives the container the cgroup namespace its spec asks for, rooted at the
// cgroup the agent placed the process in before it sent the config (as runc does after joining
// the container's cgroup). Without a cgroup from the agent, nothing is unshared: the namespace
// would be rooted at the agent's own cgroup.
func enterCgroupNamespace(cfg *Config) (cgroupView, error) {
	view := cgroupView{v1: cfg.CgroupV1}
	if !cfg.Cgroup || cfg.Spec == nil || cfg.Spec.Linux == nil {
		return view, nil
	}
	for _, ns := range cfg.Spec.Linux.Namespaces {
		if ns.Type != specs.CgroupNamespace {
			continue
		}
		if ns.Path != "" {
			return view, fmt.Errorf("joining the cgroup namespace %s is not supported: each VM container has its own", ns.Path)
		}
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return view, fmt.Errorf("create the container's cgroup namespace: %w", err)
		}
		view.inNamespace = true
	}
	return view, nil
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

// mount shows the container's cgroup at target as runc does for a "cgroup" or "cgroup2" mount:
// on cgroup v2 the hierarchy itself, on cgroup v1 a tmpfs with one directory per hierarchy (and
// links for combined ones: cpu -> cpu,cpuacct). The spec's options decide ro (Docker's default)
// or rw (--security-opt writable-cgroups). Without a cgroup namespace from the spec, the mounts
// are made in a temporary one, which roots them at the container's cgroup, and the process goes
// back to its own afterwards: /proc/self/cgroup keeps the guest's full paths, as under runc.
func (v cgroupView) mount(target, dest string, opts mountOptions) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", dest, err)
	}
	flags := opts.flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	return v.rooted(func() error {
		if len(v.v1) == 0 {
			if err := unix.Mount("cgroup2", target, "cgroup2", flags, ""); err != nil {
				return fmt.Errorf("mount the container's cgroup at %s: %w", dest, err)
			}
			return nil
		}
		return mountV1(target, dest, v.v1, flags)
	})
}

func mountV1(target, dest string, hierarchies []string, flags uintptr) error {
	const base = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", target, "tmpfs", base, "mode=755"); err != nil {
		return fmt.Errorf("mount the cgroup tmpfs at %s: %w", dest, err)
	}
	for _, h := range hierarchies {
		if strings.ContainsAny(h, "/.") || h == "" {
			return fmt.Errorf("cgroup hierarchy %q is not a controller list", h)
		}
		dir := filepath.Join(target, h)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create %s/%s: %w", dest, h, err)
		}
		if err := unix.Mount("cgroup", dir, "cgroup", flags, h); err != nil {
			return fmt.Errorf("mount the container's %s cgroup at %s/%s: %w", h, dest, h, err)
		}
		if parts := strings.Split(h, ","); len(parts) > 1 {
			for _, p := range parts {
				if err := os.Symlink(h, filepath.Join(target, p)); err != nil {
					return fmt.Errorf("link %s/%s: %w", dest, p, err)
				}
			}
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY|base, "mode=755"); err != nil {
			return fmt.Errorf("make the cgroup tmpfs at %s read-only: %w", dest, err)
		}
	}
	return nil
}

// rooted runs fn in a cgroup namespace rooted at the process's cgroup: the one it is in, or a
// temporary one it leaves afterwards.
func (v cgroupView) rooted(fn func() error) error {
	if v.inNamespace {
		return fn()
	}
	own, err := unix.Open("/proc/thread-self/ns/cgroup", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the cgroup namespace: %w", err)
	}
	defer unix.Close(own)
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("create a cgroup namespace for the cgroup mounts: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(own, unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("return to the cgroup namespace after the cgroup mounts: %w", err)
	}
	return ferr
}
