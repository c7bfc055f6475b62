package commands

import (
	"github.com/spf13/pflag"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
)

// One binder per group of flags, so that every command that takes a flag describes it the same
// way.

// bindPrefix binds --prefix.
func bindPrefix(f *pflag.FlagSet, prefix *string) {
	f.StringVar(prefix, "prefix", install.DefaultPrefix, "directory of the install")
}

// bindRuntimeName binds what the runtime is called and whether it becomes the default; the
// older --default stays as a hidden alias of --set-default-runtime.
func bindRuntimeName(f *pflag.FlagSet, o *install.InstallOptions) {
	f.StringVar(&o.RuntimeName, "runtime-name", install.DefaultRuntimeName, "name of the runtime (docker run --runtime=NAME; the RuntimeClass handler with containerd)")
	f.BoolVar(&o.SetDefaultRuntime, "set-default-runtime", false, "also make it Docker's default runtime (default-runtime in daemon.json)")
	f.BoolVar(&o.SetDefaultRuntime, "default", false, "")
	_ = f.MarkDeprecated("default", "use --set-default-runtime")
}

// bindDocker binds where Docker is and, for commands that edit it, which daemon.json it reads
// (--config-file, the older name, stays as a hidden alias of --daemon-json).
func bindDocker(f *pflag.FlagSet, dockerHost, daemonJSON *string) {
	f.StringVarP(dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	if daemonJSON == nil {
		return
	}
	f.StringVar(daemonJSON, "daemon-json", "", "the daemon.json to edit, when it cannot be found from the running dockerd")
	f.StringVar(daemonJSON, "config-file", "", "")
	_ = f.MarkHidden("config-file")
}

// bindContainerd binds where containerd is; install also chooses the engine and may name
// containerd's configuration (engine and config nil elsewhere: the install records them).
func bindContainerd(f *pflag.FlagSet, address, engine, config *string) {
	f.StringVar(address, "containerd-address", "", "containerd's socket, for an install registered with containerd (default /run/containerd/containerd.sock)")
	if engine != nil {
		f.StringVar(engine, "engine", install.EngineDocker, `register with "docker" (daemon.json) or "containerd" (a drop-in under its imports, for Kubernetes nodes)`)
	}
	if config != nil {
		f.StringVar(config, "containerd-config", "", "containerd's main configuration, when containerd is not running (default: what the running containerd reads, else /etc/containerd/config.toml)")
	}
}

// bindChange binds the flags of every command that changes an install: --dry-run, --output and
// the hidden --lock-file.
func bindChange(f *pflag.FlagSet, c *install.Common, output *string, dryRun string) {
	f.BoolVar(&c.DryRun, "dry-run", false, dryRun+"; change nothing")
	bindOutput(f, output)
	f.StringVar(&c.LockPath, "lock-file", manifest.DefaultLockPath, "lock that serialises installs and uninstalls")
	_ = f.MarkHidden("lock-file")
}

// bindOutput binds --output.
func bindOutput(f *pflag.FlagSet, output *string) {
	f.StringVarP(output, "output", "o", "text", `output format: "text" or "json" (progress goes to stderr)`)
}

// bindSmoke binds the smoke container's flags.
func bindSmoke(f *pflag.FlagSet, s *install.SmokeOptions) {
	f.BoolVar(&s.SkipSmoke, "skip-smoke", false, "do not run the smoke container")
	f.StringVar(&s.SmokeImage, "smoke-image", "", "local image for the smoke container (default: busybox, when present)")
}

// bindArtifacts binds what a version of the built-in runtime is made of; kernelDefault says
// where the kernel comes from when --kernel is not given.
func bindArtifacts(f *pflag.FlagSet, a *install.ArtifactOptions, kernelDefault string) {
	f.StringVar(&a.Kernel, "kernel", "", "guest kernel package (linux-image-*.deb); default: "+kernelDefault)
	f.StringVar(&a.KernelCache, "kernel-cache", install.DefaultKernelCache, "where a fetched kernel package is kept")
	f.StringVar(&a.ArtifactsDir, "artifacts-dir", "", "directory with containerd-shim-kata-v2 and kata-agent (default: this executable's directory)")
	f.StringVar(&a.Accelerator, "accelerator", "", `"kvm", "tcg" or "auto" (default: what works on this host, as "check" says)`)
}

// replaceFlags binds what install and upgrade may replace; --force, the older flag, sets all
// of it.
type replaceFlags struct {
	replace install.Replace
	force   bool
}

func bindReplace(f *pflag.FlagSet, r *replaceFlags) {
	f.BoolVar(&r.replace.Foreign, "replace-foreign", false, "replace files (and with --from an /opt/kata) kata-deploy did not install: they are kept aside and restored by uninstall")
	f.BoolVar(&r.replace.Modified, "replace-modified", false, "replace kata-deploy's files changed since install (kept aside like foreign ones)")
	f.BoolVar(&r.replace.RuntimeEntry, "replace-runtime-entry", false, "replace a different daemon.json entry of the same runtime name")
	f.BoolVar(&r.force, "force", false, "all of --replace-foreign, --replace-modified and --replace-runtime-entry")
}

// value is the Replace the flags ask for.
func (r *replaceFlags) value() install.Replace {
	if r.force {
		return install.ReplaceAll
	}
	return r.replace
}

// bindPlugins binds --with-plugins; the plugin's name and directories are hidden (the tests run
// a plugin of their own beside the host's).
func bindPlugins(f *pflag.FlagSet, o *install.InstallOptions) {
	f.BoolVar(&o.WithPlugins, "with-plugins", false, "also install and start kata-deploy's Docker plugins (the kata-block volume driver, the kata-net network driver); uninstall removes them")
	f.StringVar(&o.Plugin.Name, "plugin-name", "", "name of the volume driver (default kata-block)")
	f.StringVar(&o.Plugin.StateDir, "plugin-state-dir", "", "directory of the volumes (default /var/lib/kata-deploy/plugins/block)")
	f.StringVar(&o.Plugin.SocketDir, "plugin-socket-dir", "", "directory Docker finds plugin sockets in (default /run/docker/plugins)")
	f.StringVar(&o.Plugin.NetworkName, "plugin-network-name", "", "name of the network driver (default kata-net)")
	f.StringVar(&o.Plugin.NetworkStateDir, "plugin-network-state-dir", "", "directory of the networks' state (default /var/lib/kata-deploy/plugins/net)")
	for _, name := range []string{"plugin-name", "plugin-state-dir", "plugin-socket-dir", "plugin-network-name", "plugin-network-state-dir"} {
		_ = f.MarkHidden(name)
	}
}

// bindTemplate binds --template; --template=false turns templating off again.
func bindTemplate(f *pflag.FlagSet, template *bool) {
	f.BoolVar(template, "template", false, "VM templating: containers start as clones of one template VM, faster and with less memory each, "+
		"but sharing its guest kernel and agent memory read-only (docs/security.md); --template=false turns it off")
}

// bindPool binds --pool; --pool 0 turns the pool off again.
func bindPool(f *pflag.FlagSet, pool *int) {
	f.IntVar(pool, "pool", 0, "with --template: keep `N` clones of the template restored and waiting (0 to 16; 0 turns it off), which halves a "+
		"container's start under emulation; each waiting clone costs ~40 MiB of host memory under TCG and a little CPU")
}
