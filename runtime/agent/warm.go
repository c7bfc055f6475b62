package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// warmDir holds the throwaway container's rootfs: a small tmpfs with the agent's own binary.
const warmDir = "/run/kata-containers/warm"

// VersionArg makes the agent binary print its version and exit: the throwaway container's
// process (cmd/kata-agent).
const VersionArg = "--version"

// warmTimeout bounds the throwaway container's run.
const warmTimeout = 30 * time.Second

// warm mounts shares, then runs a throwaway container through the same steps as a host's
// (create, start, wait, remove: namespaces, cgroups, mounts, the re-executed agent, a Go
// program's start, confined like `like`), in a VM that has run none yet, and removes every trace
// of it (OpWarm). Then it warms the network configuration (Executor.WarmNetwork), and starts the
// next container's init ahead (Executor.PrepareInit).
func (s *Server) warm(ctx context.Context, shares []agentproto.Share, like *specs.Spec, seccomp *agentproto.Seccomp) error {
	if err := s.runThrowaway(ctx, shares, like, seccomp); err != nil {
		return err
	}
	if err := s.cfg.Executor.PrepareInit(); err != nil {
		return fmt.Errorf("warm: starting the next container's init: %w", err)
	}
	return nil
}

// runThrowaway runs warm's throwaway container and the network configuration.
func (s *Server) runThrowaway(ctx context.Context, shares []agentproto.Share, like *specs.Spec, seccomp *agentproto.Seccomp) (err error) {
	s.mu.Lock()
	ran := s.ranAny
	s.mu.Unlock()
	if ran {
		return errors.New("warm: this VM has run containers already")
	}
	ctx, cancel := context.WithTimeout(ctx, warmTimeout)
	defer cancel()
	for _, sh := range shares {
		if err := sh.Validate(); err != nil {
			return fmt.Errorf("warm: %w", err)
		}
		if err := s.mountShare(ctx, sh); err != nil {
			return fmt.Errorf("warm: %w", err)
		}
	}
	rootfs, cleanup, err := s.cfg.Executor.WarmRootfs()
	if err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	defer cleanup()
	req := agentproto.Request{Container: agentproto.WarmContainerID, Spec: warmSpec(rootfs, like), Seccomp: seccomp}
	defer func() {
		// Not a container of the host's: the VM must still count as one that ran none (an
		// idle VM that ran containers powers off).
		s.mu.Lock()
		s.ranAny = ran
		s.mu.Unlock()
	}()
	if err := s.create(ctx, req); err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	defer func() {
		if rerr := s.remove(req); rerr != nil && err == nil {
			err = fmt.Errorf("warm: %w", rerr)
		}
	}()
	if _, err := s.start(req); err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	status, _, err := s.wait(ctx, req)
	if err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	if status != 0 {
		return fmt.Errorf("warm: the throwaway container exited %d", status)
	}
	if err := s.cfg.Executor.WarmNetwork(); err != nil {
		return fmt.Errorf("warm: %w", err)
	}
	return nil
}

// WarmRootfs makes the throwaway container's rootfs: a tmpfs holding the agent's binary at /w
// (bound read-only); the container makes its mount points.
func (e *NSExecutor) WarmRootfs() (string, func(), error) {
	rootfs := filepath.Join(warmDir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o700); err != nil {
		return "", nil, err
	}
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256k,mode=0755"); err != nil {
		return "", nil, fmt.Errorf("mount the rootfs: %w", err)
	}
	e.mountChanged()
	cleanup := func() {
		_ = unix.Unmount(rootfs, unix.MNT_DETACH)
		e.mountChanged()
		_ = os.RemoveAll(warmDir)
	}
	exe := filepath.Join(rootfs, "w")
	err := os.WriteFile(exe, nil, 0o755)
	if err == nil {
		err = unix.Mount("/proc/self/exe", exe, "", unix.MS_BIND, "")
	}
	if err == nil {
		err = unix.Mount("", exe, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("the rootfs: %w", err)
	}
	return rootfs, cleanup, nil
}

// warmSpec is the throwaway container: the namespaces and the kernel file systems Docker gives a
// container, and the confinement of `like` (see Client.Warm), so that setting them up is warm too.
func warmSpec(rootfs string, like *specs.Spec) *specs.Spec {
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs},
		Process: &specs.Process{Args: []string{"/w", VersionArg}, Cwd: "/", Env: []string{"PATH=/"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		},
	}
	if like == nil {
		return spec
	}
	if like.Process != nil {
		spec.Process.Capabilities = like.Process.Capabilities
		spec.Process.NoNewPrivileges = like.Process.NoNewPrivileges
	}
	if like.Linux != nil {
		spec.Linux.Seccomp = like.Linux.Seccomp
		spec.Linux.MaskedPaths = like.Linux.MaskedPaths
		spec.Linux.ReadonlyPaths = like.Linux.ReadonlyPaths
	}
	return spec
}

// WarmNetwork applies an empty network configuration (lo up, no card, no route), as a container's
// does with its own, and brings every Ethernet card up and down again (a pooled clone's spare
// card: its first bring-up fills its receive ring), so that configuring a container's network
// runs warm code on a warm card.
func (e *NSExecutor) WarmNetwork() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening a netlink socket: %w", err)
	}
	defer h.Close()
	if err := applyNetwork(context.Background(), h, agentproto.Network{}, 0); err != nil {
		return err
	}
	all, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("listing the guest's links: %w", err)
	}
	for _, l := range all {
		if l.Attrs().EncapType != "ether" {
			continue
		}
		err := h.LinkSetUp(l)
		if err == nil {
			err = h.LinkSetDown(l)
		}
		if err != nil {
			return fmt.Errorf("bringing %s up and down: %w", l.Attrs().Name, err)
		}
	}
	return nil
}
