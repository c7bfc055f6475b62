package hypervisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/qemusandbox"
)

// daemon is a virtiofsd serving one share.
type daemon struct {
	proc *os.Process
	done chan struct{}
}

// startVirtiofsd starts virtiofsd for share i on a socket that is already
// listening, so QEMU can connect as soon as it starts: no waiting for the
// daemon to create its socket, no race.
func startVirtiofsd(c *Config, l layout, i int, s Share, sandbox qemusandbox.Virtiofsd) (*daemon, error) {
	sock := l.vfsSocket(i)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s for virtiofsd: %w", sock, err)
	}
	// The socket file must survive our copy of the listener.
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	lf, err := ln.File()
	if err != nil {
		return nil, fmt.Errorf("virtiofsd socket: %w", err)
	}
	defer lf.Close()
	logFile, err := os.OpenFile(l.vfsLog(i), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("virtiofsd log: %w", err)
	}
	defer logFile.Close()

	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	// Not tied to a context: virtiofsd lives as long as the VM. It exits
	// by itself when QEMU closes the vhost-user connection. Confined as
	// QEMU is (confine.go), with no network at all, and sandboxed by
	// itself as far as the binary can.
	args := []string{c.VirtiofsDaemon, "--fd=3", "-o", "source=" + s.HostPath + ",cache=auto"}
	args = append(args, sandbox.SandboxArgs()...)
	p, err := spawn(spawnSpec{
		path:     c.VirtiofsDaemon,
		argv:     args,
		files:    []*os.File{devNull, logFile, logFile, lf},
		keepCaps: virtiofsdCaps,
	})
	if err != nil {
		return nil, fmt.Errorf("start virtiofsd: %w", err)
	}
	d := &daemon{proc: p, done: make(chan struct{})}
	go func() {
		_, _ = p.Wait()
		close(d.done)
	}()
	if err := writeIdentity(l.vfsPid(i), p.Pid); err != nil {
		d.stop(context.Background(), 0)
		return nil, fmt.Errorf("record virtiofsd pid: %w", err)
	}
	if c.Placed != nil {
		if err := c.Placed(p.Pid); err != nil {
			d.stop(context.Background(), 0)
			return nil, fmt.Errorf("placing virtiofsd (pid %d): %w", p.Pid, err)
		}
	}
	return d, nil
}

// stop gives virtiofsd grace to exit after QEMU disconnected, then kills
// it, and waits for it.
func (d *daemon) stop(ctx context.Context, grace time.Duration) {
	if grace > 0 {
		_ = d.proc.Signal(syscall.SIGTERM)
		if waitDone(ctx, d.done, grace) {
			return
		}
	}
	_ = d.proc.Kill()
	<-d.done
}

// startVirtiofsds starts one virtiofsd per virtio-fs share; on failure it
// stops those it started.
func startVirtiofsds(ctx context.Context, c *Config, l layout) ([]*daemon, error) {
	if !hasVirtiofs(c.Shares) {
		return nil, nil
	}
	sandbox := qemusandbox.ProbeVirtiofsd(ctx, c.VirtiofsDaemon)
	if !sandbox.Namespace || !sandbox.Seccomp {
		c.logf("WARNING: %s sandboxes itself only partly: %s", c.VirtiofsDaemon, sandbox)
	}
	var ds []*daemon
	for i, s := range c.Shares {
		if s.Type != ShareVirtiofs {
			continue
		}
		d, err := startVirtiofsd(c, l, i, s, sandbox)
		if err != nil {
			stopDaemons(context.Background(), ds, 0)
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

func stopDaemons(ctx context.Context, ds []*daemon, grace time.Duration) {
	for _, d := range ds {
		d.stop(ctx, grace)
	}
}
