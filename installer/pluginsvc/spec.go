// Package pluginsvc runs kata-deploy's Docker plugins (the kata-plugins binary, which serves the
// kata-block volume driver and the kata-net network driver on /run/docker/plugins/<name>.sock) as
// a service of the host: a
// systemd unit ordered before docker.service where systemd runs, otherwise a process of its own
// session, recorded by pid and start time so that only that process is ever stopped.
package pluginsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Defaults of a Spec; they are kata-plugins' own defaults.
const (
	DefaultName     = "kata-block"
	DefaultStateDir = "/var/lib/kata-deploy/plugins/block"
	// The network driver's defaults.
	DefaultNetworkName     = "kata-net"
	DefaultNetworkStateDir = "/var/lib/kata-deploy/plugins/net"
	DefaultSocketDir       = "/run/docker/plugins"
	// BinaryName is the plugins' executable, built next to kata-deploy.
	BinaryName = "kata-plugins"
)

// Spec is one kata-plugins service.
type Spec struct {
	Name      string // the volume driver's name: docker volume create -d NAME
	Binary    string
	StateDir  string
	SocketDir string
	// NetworkName is the network driver's name (docker network create -d NAME); "" serves none.
	NetworkName     string
	NetworkStateDir string
}

// nameRe is what kata-plugins accepts as a driver name, and what is safe in a unit's name.
var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// pathRe keeps paths that go into a unit's ExecStart free of what systemd would interpret
// (spaces, quotes, %, $, backslashes).
var pathRe = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)

// ValidName reports whether name is one kata-plugins accepts as a driver name (which is also safe
// as a socket's file name).
func ValidName(name string) bool { return nameRe.MatchString(name) }

// Validate checks the name and that every path is absolute, clean and plain.
func (s Spec) Validate() error {
	if !nameRe.MatchString(s.Name) {
		return fmt.Errorf("plugin name %q is invalid: use lower-case letters, digits, '_', '.', '-' (at most 64)", s.Name)
	}
	paths := map[string]string{"binary": s.Binary, "state directory": s.StateDir, "socket directory": s.SocketDir}
	if s.NetworkName != "" {
		if !nameRe.MatchString(s.NetworkName) || s.NetworkName == s.Name {
			return fmt.Errorf("network driver name %q is invalid: use lower-case letters, digits, '_', '.', '-' (at most 64), not the volume driver's name", s.NetworkName)
		}
		paths["network state directory"] = s.NetworkStateDir
	}
	for what, p := range paths {
		if !pathRe.MatchString(p) || filepath.Clean(p) != p || p == "/" {
			return fmt.Errorf("the plugin's %s %q must be a clean absolute path other than / of letters, digits and /._+-", what, p)
		}
	}
	return nil
}

// Socket is where Docker finds the driver.
func (s Spec) Socket() string { return filepath.Join(s.SocketDir, s.Name+".sock") }

// Sockets are the sockets of every driver served: the volume driver's, then the network driver's.
func (s Spec) Sockets() []string {
	socks := []string{s.Socket()}
	if s.NetworkName != "" {
		socks = append(socks, filepath.Join(s.SocketDir, s.NetworkName+".sock"))
	}
	return socks
}

// Args is the command line of the service. Without a network driver name, "--network-name=" (one
// word, for a unit's ExecStart) turns the network driver off.
func (s Spec) Args() []string {
	args := []string{s.Binary, "--volume-name", s.Name, "--state-dir", s.StateDir, "--socket-dir", s.SocketDir}
	if s.NetworkName == "" {
		return append(args, "--network-name=")
	}
	return append(args, "--network-name", s.NetworkName, "--network-state-dir", s.NetworkStateDir)
}

// SystemdRuns reports whether systemd is the init system (sd_booted(3): /run/systemd/system is
// a directory) and systemctl is there to drive it.
func SystemdRuns() bool {
	fi, err := os.Stat("/run/systemd/system")
	if err != nil || !fi.IsDir() {
		return false
	}
	_, err = lookSystemctl()
	return err == nil
}

// Reachable reports whether something accepts connections on the unix socket at path.
func Reachable(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ErrNotServing is returned by WaitServing when the socket is not served in time.
var ErrNotServing = errors.New("the plugin does not serve its socket")

// WaitServing waits until the socket at path accepts connections. alive, when not nil, says
// early that the service is gone (its error is returned).
func WaitServing(ctx context.Context, path string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if Reachable(path) {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w %s within %s", ErrNotServing, path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
