// Package plugin serves kata-deploy's Docker plugins (the kata-block volume driver and the
// kata-net network driver) as legacy plugins: one unix socket per driver in /run/docker/plugins,
// which Docker finds by name.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/docker/go-connections/sockets"
	dnetwork "github.com/docker/go-plugins-helpers/network"
	dvolume "github.com/docker/go-plugins-helpers/volume"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/plugin/network"
	"github.com/kata-deploy/kata-deploy/plugin/volume"
)

// Defaults of Options.
const (
	DefaultVolumeName      = "kata-block"
	DefaultStateDir        = "/var/lib/kata-deploy/plugins/block"
	DefaultNetworkName     = "kata-net"
	DefaultNetworkStateDir = "/var/lib/kata-deploy/plugins/net"
	DefaultSocketDir       = "/run/docker/plugins"
)

// Options configure Serve.
type Options struct {
	VolumeName string // the driver name: docker volume create -d <VolumeName>
	StateDir   string
	// NetworkName is the network driver's name (docker network create -d <NetworkName>); ""
	// serves no network driver. It must run in dockerd's network namespace.
	NetworkName     string
	NetworkStateDir string
	SocketDir       string
	// HostStateDir is where the host sees StateDir ("": the same path; HostStateDirAuto: found
	// from the plugin's own mount table, for a managed plugin whose state directory is its
	// propagated mount).
	HostStateDir string
	GID          int // group owning the socket (mode 0660)
	Logf         func(format string, args ...any)
}

var pluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// SocketPath is where the driver called name listens.
func SocketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// Serve runs the drivers until ctx ends, then removes their sockets.
func Serve(ctx context.Context, o Options) error {
	for _, name := range []string{o.VolumeName, o.NetworkName} {
		if name != "" && !pluginName.MatchString(name) {
			return fmt.Errorf("plugin name %q is invalid: use lower-case letters, digits, '_', '.', '-'", name)
		}
	}
	if o.VolumeName == "" || o.VolumeName == o.NetworkName {
		return errors.New("the volume and network drivers need two different names")
	}
	hostDir, err := resolveHostStateDir(o.HostStateDir, o.StateDir, o.Logf)
	if err != nil {
		return err
	}
	vd, err := volume.New(volume.Config{
		StateDir: o.StateDir, HostStateDir: hostDir, DirectVolumeRoot: directvolume.Root, BootID: bootID(),
		Disk: volume.HostDisk{}, Logf: o.Logf,
	})
	if err != nil {
		return err
	}
	servers := []server{{o.VolumeName, "volume", dvolume.NewHandler(vd).Serve}}
	if o.NetworkName != "" {
		nd, err := network.New(network.Config{StateDir: o.NetworkStateDir, Links: network.HostLinks{Owner: network.OwnerAlias(o.NetworkName)}, Firewall: network.IPTables{}, Logf: o.Logf})
		if err != nil {
			return fmt.Errorf("network driver %s: %w", o.NetworkName, err)
		}
		servers = append(servers, server{o.NetworkName, "network", dnetwork.NewHandler(nd).Serve})
	}
	if err := os.MkdirAll(o.SocketDir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(servers))
	for _, sv := range servers {
		go func() {
			errs <- sv.serve(ctx, o)
			cancel() // one driver failing stops the other: a supervisor restarts both
		}()
	}
	var all []error
	for range servers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// server is one driver on its socket.
type server struct {
	name, kind string
	handle     func(net.Listener) error
}

func (sv server) serve(ctx context.Context, o Options) error {
	path := SocketPath(o.SocketDir, sv.name)
	// NewUnixSocket replaces a stale socket and makes the new one 0660, owned by GID.
	l, err := sockets.NewUnixSocket(path, o.GID)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	defer os.Remove(path)
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	o.Logf("%s driver %s listening on %s", sv.kind, sv.name, path)
	err = sv.handle(l)
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("%s driver %s: %w", sv.kind, sv.name, err)
}

// bootID identifies this boot of the host: mounts recorded in another one are gone.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
