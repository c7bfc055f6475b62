// Package plugin serves kata-deploy's Docker plugins (the kata-block volume driver) as legacy
// plugins: one unix socket per driver in /run/docker/plugins, which Docker finds by name.
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
	dvolume "github.com/docker/go-plugins-helpers/volume"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/plugin/volume"
)

// Defaults of Options.
const (
	DefaultVolumeName = "kata-block"
	DefaultStateDir   = "/var/lib/kata-deploy/plugins/block"
	DefaultSocketDir  = "/run/docker/plugins"
)

// Options configure Serve.
type Options struct {
	VolumeName string // the driver name: docker volume create -d <VolumeName>
	StateDir   string
	SocketDir  string
	GID        int // group owning the socket (mode 0660)
	Logf       func(format string, args ...any)
}

var pluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// SocketPath is where the driver called name listens.
func SocketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// Serve runs the volume driver until ctx ends, then removes its socket.
func Serve(ctx context.Context, o Options) error {
	if !pluginName.MatchString(o.VolumeName) {
		return fmt.Errorf("plugin name %q is invalid: use lower-case letters, digits, '_', '.', '-'", o.VolumeName)
	}
	d, err := volume.New(volume.Config{
		StateDir: o.StateDir, DirectVolumeRoot: directvolume.Root, BootID: bootID(),
		Disk: volume.HostDisk{}, Logf: o.Logf,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.SocketDir, 0o755); err != nil {
		return err
	}
	path := SocketPath(o.SocketDir, o.VolumeName)
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
	o.Logf("volume driver %s listening on %s (state in %s)", o.VolumeName, path, o.StateDir)
	err = dvolume.NewHandler(d).Serve(l)
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// bootID identifies this boot of the host: mounts recorded in another one are gone.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
