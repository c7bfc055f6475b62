// Package pluginbundle builds kata-plugins as a Docker managed plugin: a directory holding
// config.json and rootfs/ that `docker plugin create NAME DIR` accepts offline, the alternative to
// `kata-deploy install --with-plugins` (a legacy plugin run by the host).
//
// The rootfs holds the static kata-plugins and the host's own file system tools with the shared
// libraries they load (mkfs.ext4, e2fsck, mkfs.xfs, xfs_repair, mount), copied from this machine:
// nothing is downloaded.
package pluginbundle

import (
	"github.com/docker/docker/api/types"

	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/plugin"
)

// Paths inside the plugin.
const (
	// Binary is kata-plugins in the rootfs.
	Binary = "/kata-plugins"
	// StateDir is the volumes' directory, Docker's propagated mount: Docker keeps it under its
	// own plugin directory on the host and sees the loop mounts the plugin makes there.
	StateDir = pluginsvc.DefaultStateDir
	// Socket is the driver's socket in the plugin's /run/docker/plugins.
	Socket = pluginsvc.DefaultName + ".sock"
	path   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Description says what the bundle is.
const Description = "kata-deploy's kata-block volume driver (block-device volumes: a sparse image per volume, " +
	"a virtio-blk disk in a VM container of kata-deploy's runtime, loop-mounted for runc containers). " +
	"It writes its direct-volume records into the host's " + directvolume.Root + ", which must exist " +
	"before the plugin is enabled."

// Config is the plugin's config.json.
func Config() *types.PluginConfig {
	devSource := "/dev"
	dvSource := directvolume.Root
	pathValue := path
	return &types.PluginConfig{
		Description:   Description,
		Documentation: "https://github.com/kata-deploy/kata-deploy/blob/main/docs/plugins.md",
		Interface: types.PluginConfigInterface{
			Types:  []types.PluginInterfaceType{{Prefix: "docker", Capability: "volumedriver", Version: "1.0"}},
			Socket: Socket,
		},
		// The volume driver only. Its state directory is the propagated mount: the records name the
		// host's paths, found from the plugin's mount table (plugin.HostStateDirAuto).
		Entrypoint: []string{Binary, "--volume-name", pluginsvc.DefaultName, "--state-dir", StateDir,
			"--socket-dir", pluginsvc.DefaultSocketDir, "--network-name=", "--host-state-dir", plugin.HostStateDirAuto},
		WorkDir:         "/",
		Network:         types.PluginConfigNetwork{Type: "none"},
		PropagatedMount: StateDir,
		Linux: types.PluginConfigLinux{
			// Loop mounts (mount -o loop, umount) need CAP_SYS_ADMIN; the loop devices are
			// allocated on the fly, hence the host's /dev and every device.
			Capabilities:    []string{"CAP_SYS_ADMIN"},
			AllowAllDevices: true,
			Devices:         []types.PluginDevice{},
		},
		Mounts: []types.PluginMount{
			{Name: "dev", Description: "the host's /dev: loop devices for runc containers' mounts",
				Source: &devSource, Destination: "/dev", Type: "bind", Options: []string{"rbind"}, Settable: []string{}},
			// At the same path: the VM runtime reads the records there, and they name host paths.
			{Name: "direct-volumes", Description: "the host's direct-volume records, where the VM runtime finds a volume's image",
				Source: &dvSource, Destination: directvolume.Root, Type: "bind", Options: []string{"rbind", "rw"}, Settable: []string{}},
		},
		Env:  []types.PluginEnv{{Name: "PATH", Description: "where the file system tools are", Value: &pathValue, Settable: []string{}}},
		Args: types.PluginConfigArgs{Name: "args", Description: "more kata-plugins flags", Settable: []string{"value"}, Value: []string{}},
	}
}
