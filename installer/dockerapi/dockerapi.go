// Package dockerapi talks to the local Docker daemon on behalf of the installer: the Engine API
// (runtimes, containers, the reload event, a smoke container), plus the dockerd process behind
// the API socket, which is what gets SIGHUP and whose binary validates a daemon.json.
//
// The process is found with dockerd.FindServer (socket peer credentials, socket activation
// handled), never with the bare peer pid: under systemd socket activation that pid is systemd's.
package dockerapi

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
)

// DefaultReloadTimeout bounds the wait for dockerd's reload event.
const DefaultReloadTimeout = 20 * time.Second

// Engine is a connection to a local Docker daemon and the process serving it.
type Engine struct {
	cli *client.Client
	// Host is the Engine API address used.
	Host string
	// Server is the dockerd process serving Host.
	Server dockerd.Server
	// Config is the daemon.json that process reads.
	Config dockerd.ConfigLocation
	// Version is the daemon's version, as `docker version` prints it.
	Version string
	// ReloadTimeout bounds Reload (DefaultReloadTimeout when zero).
	ReloadTimeout time.Duration
	procRoot      string
	// binary is the daemon's binary, checked by dockerd.TrustedBinary: what Validate runs.
	binary string
}

// Connect reaches the daemon at host ("" means $DOCKER_HOST, else Docker's default socket) with
// API version negotiation, and finds the dockerd process serving it. The daemon must be local:
// reloading it takes a signal. It must also be trusted (dockerd.TrustedBinary): a root daemon
// with a root-owned binary when kata-deploy runs as root, since it is signalled, its
// daemon.json written and its binary run.
func Connect(ctx context.Context, host string) (*Engine, error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = client.DefaultDockerHost
	}
	sock, err := unixSocketPath(host)
	if err != nil {
		return nil, err
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("creating a Docker client for %s: %w", host, err)
	}
	e := &Engine{cli: cli, Host: host, procRoot: "/proc"}
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("cannot reach Docker at %s: %w (start Docker, or point DOCKER_HOST or -H at it)", host, err)
	}
	e.Version = v.Version
	if e.Server, err = dockerd.FindServer(e.procRoot, sock); err != nil {
		cli.Close()
		return nil, fmt.Errorf("finding the dockerd behind %s: %w", sock, err)
	}
	if e.binary, err = dockerd.TrustedBinary(e.Server.Process, os.Geteuid()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("the Docker daemon at %s: %w", sock, err)
	}
	e.Config = dockerd.ResolveConfigFile(e.Server.Process)
	return e, nil
}

// Close releases the API connection.
func (e *Engine) Close() error { return e.cli.Close() }

// Runtimes returns the runtimes the daemon has loaded (GET /info), sorted, and its default.
func (e *Engine) Runtimes(ctx context.Context) ([]string, string, error) {
	info, err := e.cli.Info(ctx)
	if err != nil {
		return nil, "", err
	}
	names := make([]string, 0, len(info.Runtimes))
	for name := range info.Runtimes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, info.DefaultRuntime, nil
}

// unixSocketPath returns the socket of a unix:// host; a TCP or SSH daemon runs elsewhere and
// cannot be reconfigured from here.
func unixSocketPath(host string) (string, error) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		return "", fmt.Errorf("the Docker host %q is not a local unix socket: run kata-deploy on the Docker host itself", host)
	}
	p := u.Path
	if p == "" {
		p = strings.TrimPrefix(host, "unix://")
	}
	return filepath.Clean(p), nil
}
