package check

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/accel"
)

// Options say where to look. The zero value means this host and DOCKER_HOST (or Docker's default
// socket).
type Options struct {
	// DockerHost overrides DOCKER_HOST, e.g. "unix:///run/docker.sock".
	DockerHost string
	// DockerTimeout bounds every Engine API call (default 5 s).
	DockerTimeout time.Duration
	// The plugin drivers to report: names (default kata-block and kata-net) and the directory of
	// their sockets (default /run/docker/plugins).
	VolumeDriver, NetworkDriver, PluginSocketDir string
}

// withDefaults fills in the plugin drivers' defaults.
func (o Options) withDefaults() Options {
	if o.VolumeDriver == "" {
		o.VolumeDriver = pluginsvc.DefaultName
	}
	if o.NetworkDriver == "" {
		o.NetworkDriver = pluginsvc.DefaultNetworkName
	}
	if o.PluginSocketDir == "" {
		o.PluginSocketDir = pluginsvc.DefaultSocketDir
	}
	return o
}

// Devices are the host device nodes the runtime uses.
var devicePaths = []string{"/dev/net/tun", "/dev/vhost-net", "/dev/vhost-vsock"}

// Gather collects the facts of this host. It never fails: what cannot be found is recorded as such.
func Gather(ctx context.Context, opts Options) Facts {
	opts = opts.withDefaults()
	var f Facts
	var err error
	if f.Distro, err = hostinfo.ReadDistro("/"); err != nil {
		f.DistroErr = err.Error()
	}
	f.KernelRelease, _ = hostinfo.KernelRelease()
	f.CgroupVersion, _ = hostinfo.CgroupVersion("/sys/fs/cgroup")
	f.Root = hostinfo.IsRoot()
	if f.CPU, err = accel.ReadHostCPU(); err != nil {
		f.CPUErr = err.Error()
	}
	f.KVM = accel.ProbeHostKVM(f.CPU)
	for _, p := range devicePaths {
		f.Devices = append(f.Devices, hostinfo.ProbeDevice(p))
	}
	if f.QEMU, err = hostinfo.FindQEMU(nil); err != nil {
		f.QEMUErr = err.Error()
	}
	f.Docker = GatherDocker(ctx, opts)
	f.Existing = hostinfo.FindExistingInstalls("/")
	f.Plugin = GatherPlugin(opts.PluginSocketDir, opts.VolumeDriver)
	f.NetworkPlugin = GatherPlugin(opts.PluginSocketDir, opts.NetworkDriver)
	return f
}

// GatherPlugin looks at the socket of kata-deploy's plugin driver called name in dir.
func GatherPlugin(dir, name string) Plugin {
	s := pluginsvc.Spec{Name: name, SocketDir: dir}
	p := Plugin{Name: name, Socket: s.Socket()}
	if _, err := os.Lstat(p.Socket); err == nil {
		p.Present, p.Reachable = true, pluginsvc.Reachable(p.Socket)
	}
	return p
}

// GatherDocker asks the daemon behind opts.DockerHost about itself, and finds the dockerd process
// serving it (through the socket's peer credentials) to learn which daemon.json it really reads.
func GatherDocker(ctx context.Context, opts Options) Docker {
	opts = opts.withDefaults()
	host := opts.DockerHost
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = client.DefaultDockerHost
	}
	timeout := opts.DockerTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	d := Docker{Host: host, BlockVolumes: -1, NetNetworks: -1}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := cli.ServerVersion(ctx)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	d.Reachable = true
	d.Version, d.APIVersion, d.MinAPIVersion = v.Version, v.APIVersion, v.MinAPIVersion
	d.ShimV2Runtimes = ShimV2Supported(v.Version)
	if info, err := cli.Info(ctx); err == nil {
		for name := range info.Runtimes {
			d.Runtimes = append(d.Runtimes, name)
		}
		sort.Strings(d.Runtimes)
		d.DefaultRuntime, d.CgroupDriver, d.CgroupVersion = info.DefaultRuntime, info.CgroupDriver, info.CgroupVersion
	}
	if vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", opts.VolumeDriver))}); err == nil {
		d.BlockVolumes = len(vols.Volumes)
	}
	if nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", opts.NetworkDriver))}); err == nil {
		d.NetNetworks = len(nets)
	}
	locateDaemonConfig(host, &d)
	return d
}

// locateDaemonConfig fills in the dockerd pid and its daemon.json, when the daemon is local.
func locateDaemonConfig(host string, d *Docker) {
	sock, ok := unixSocketPath(host)
	if !ok {
		return
	}
	// Not the socket's peer pid alone: under systemd socket activation that is systemd's.
	server, err := dockerd.FindServer("/proc", sock)
	if err != nil {
		return
	}
	d.PID = server.Process.PID
	loc := dockerd.ResolveConfigFile(server.Process)
	d.ConfigFile, d.ConfigFileSource, d.ConfigReadOnly = loc.Path, loc.Source, loc.ReadOnly
}

// unixSocketPath returns the socket path of a unix:// Docker host.
func unixSocketPath(host string) (string, bool) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		return "", false
	}
	p := u.Path
	if p == "" {
		p = strings.TrimPrefix(host, "unix://")
	}
	return filepath.Clean(p), true
}
