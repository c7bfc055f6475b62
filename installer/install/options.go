// Package install puts kata-deploy's runtime on a host and takes it off again: the guest image,
// the shim and its configuration under a prefix, the runtime's registration in Docker's
// daemon.json, a smoke container, and the manifest that records all of it.
//
// Install first computes a plan from what is on disk and what is wanted, then carries it out
// step by step, journaling each step in the manifest before and after it, so that a process
// killed after any step leaves a state that running Install or Uninstall again completes. With
// the same inputs a second Install finds nothing to do and changes nothing. Uninstall removes
// only what the manifest says was created (and is unmodified) and reverts only its own
// daemon.json changes. Status reports without changing anything.
package install

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/containerdsvc"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/installer/upstream"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// Defaults.
const (
	DefaultPrefix      = layout.DefaultPrefix
	DefaultRuntimeName = "kata"
	DefaultKernelCache = "/var/cache/kata-deploy/kernel"
	DefaultSmokeImage  = "busybox"
)

// Common are the options of every command that changes an install.
type Common struct {
	Prefix   string // absolute; DefaultPrefix when empty
	LockPath string // manifest.DefaultLockPath when empty
	DryRun   bool
	// ContainerdAddress is containerd's socket (containerdsvc.DefaultAddress when empty), for an
	// install registered with containerd.
	ContainerdAddress string

	// Progress receives a line per step of a long operation.
	Progress func(string)
	// Warn receives what the user should know that does not stop the operation.
	Warn func(string)
	// AfterStep, when set, is called after each durable step with its name (Steps): the hook
	// of the fault-injection tests, which kill the process there.
	AfterStep func(string)
}

// ArtifactOptions say which artifacts make a version of the built-in runtime.
type ArtifactOptions struct {
	// ArtifactsDir holds containerd-shim-kata-v2 and kata-agent; empty means the directory of
	// the running executable.
	ArtifactsDir string
	// Kernel is a linux-image-*.deb; empty means the one recorded by a previous install, else
	// the distribution's kernel package fetched into KernelCache.
	Kernel      string
	KernelCache string
	// Accelerator overrides the detected one: "auto", "kvm" or "tcg".
	Accelerator string
	// DaemonJSON overrides the daemon.json the running dockerd reads (only where that cannot be
	// found out).
	DaemonJSON string
	// Replace says what may be replaced that is not kata-deploy's as it installed it (the
	// CLI's --force sets all of it).
	Replace Replace
	// Version is kata-deploy's version, recorded in the manifest.
	Version string
}

// SmokeOptions say whether and with what a smoke container checks the runtime.
type SmokeOptions struct {
	SkipSmoke  bool
	SmokeImage string // empty: busybox when present locally
}

// InstallOptions say what to install and how.
type InstallOptions struct {
	Common
	ArtifactOptions
	SmokeOptions
	RuntimeName string // DefaultRuntimeName when empty
	// SetDefaultRuntime also makes it Docker's default-runtime.
	SetDefaultRuntime bool
	// From is an upstream Kata Containers release tarball (kata-static-<version>-<arch>.tar.xz
	// or .tar.zst) to install instead of kata-deploy's own runtime, extracted to KataDir.
	From string
	// KataDir is where the release goes: upstream.DefaultDir (/opt/kata), where its
	// configuration expects it, unless a test says otherwise.
	KataDir string
	// Engine is what the runtime is registered with: EngineDocker (daemon.json, the default) or
	// EngineContainerd (a drop-in under containerd's imports, for Kubernetes nodes).
	Engine string
	// ContainerdConfig is containerd's main configuration when it cannot be read from the
	// running daemon.
	ContainerdConfig string
	// WithPlugins also installs and starts kata-deploy's Docker plugins (kata-plugins: the
	// kata-block volume driver) as Plugin says.
	WithPlugins bool
	Plugin      PluginOptions
	// Template turns VM templating on (true) or off (false) in the runtime configuration
	// ([factory] template); nil keeps what the version in use has (off for a new install).
	// Upgrades keep it.
	Template *bool
	// Pool is how many clones of the template the runtime keeps waiting ([factory] pool, 0 to
	// config.MaxPool; more than 0 needs templating on); nil keeps what the version in use has.
	// Upgrades keep it.
	Pool *int
}

// UpgradeOptions say which artifacts to upgrade to; the runtime name, default and engine are
// the install's.
type UpgradeOptions struct {
	Common
	ArtifactOptions
	SmokeOptions
}

// RollbackOptions are the options of Rollback.
type RollbackOptions struct {
	Common
	SmokeOptions
}

// UninstallOptions are the options of Uninstall.
type UninstallOptions struct {
	Common
	// IgnoreInUse: uninstall proceeds while containers use the runtime (they keep running,
	// without their runtime's files).
	IgnoreInUse bool
	// RemovePluginWithVolumes: the plugin is removed although Docker still has volumes of it
	// (they are listed; their images stay).
	RemovePluginWithVolumes bool
}

// StatusOptions are the options of GetStatus, which changes nothing.
type StatusOptions struct {
	Prefix            string // DefaultPrefix when empty
	ContainerdAddress string
}

// options carry one run of any command: the install's options, and what only another command
// sets.
type options struct {
	InstallOptions
	IgnoreInUse             bool
	RemovePluginWithVolumes bool
	// upgrade: Upgrade, which requires an existing install.
	upgrade bool
}

func (o InstallOptions) options() options { return options{InstallOptions: o} }

func (o UpgradeOptions) options() options {
	return options{InstallOptions: InstallOptions{Common: o.Common, ArtifactOptions: o.ArtifactOptions, SmokeOptions: o.SmokeOptions}, upgrade: true}
}

func (o RollbackOptions) options() options {
	return options{InstallOptions: InstallOptions{Common: o.Common, SmokeOptions: o.SmokeOptions}}
}

func (o UninstallOptions) options() options {
	return options{InstallOptions: InstallOptions{Common: o.Common}, IgnoreInUse: o.IgnoreInUse, RemovePluginWithVolumes: o.RemovePluginWithVolumes}
}

func (o StatusOptions) options() options {
	return options{InstallOptions: InstallOptions{Common: Common{Prefix: o.Prefix, ContainerdAddress: o.ContainerdAddress}}}
}

// Validate checks the options as the command will, for a usage error before anything runs.
func (o InstallOptions) Validate() error   { return o.options().validate() }
func (o UpgradeOptions) Validate() error   { return o.options().validate() }
func (o RollbackOptions) Validate() error  { return o.options().validate() }
func (o UninstallOptions) Validate() error { return o.options().validate() }
func (o StatusOptions) Validate() error    { return o.options().validate() }

// Replace lists what an install may replace that is not kata-deploy's as it installed it.
type Replace struct {
	// Foreign: files under the prefix, and an upstream release's directory, that kata-deploy
	// did not install. They are moved aside, and uninstall puts them back.
	Foreign bool
	// Modified: kata-deploy's files changed since it installed them (kept aside like foreign
	// ones); without it they are left as they are, with a warning.
	Modified bool
	// RuntimeEntry: a different entry of the same runtime name in daemon.json.
	RuntimeEntry bool
}

// ReplaceAll replaces everything: what --force means.
var ReplaceAll = Replace{Foreign: true, Modified: true, RuntimeEntry: true}

// Install step names, in order, as passed to Options.AfterStep.
const (
	StepPrefix      = "prefix"
	StepDirs        = "dirs"
	StepShim        = "shim"
	StepImageStaged = "image-staged"
	StepImage       = "image"
	StepConfig      = "config"
	StepRegistered  = "registered"
	StepInstalled   = "installed"
	StepSmoke       = "smoke"
)

// InstallSteps lists every point at which Install calls AfterStep on a fresh install, in order.
var InstallSteps = []string{StepPrefix, StepDirs, StepShim, StepImageStaged, StepImage, StepConfig,
	StepSwitchJournaled, StepSwitched, registration.CheckpointJournaled, registration.CheckpointWritten,
	StepRegistered, StepInstalled, StepSmoke}

// UpgradeSteps lists every point at which an upgrade (or an install with new inputs) calls
// AfterStep, in order, when a previous version is pruned and daemon.json is not touched.
var UpgradeSteps = []string{StepPrefix, StepDirs, StepShim, StepImageStaged, StepImage, StepConfig,
	StepSwitchJournaled, StepSwitched, StepInstalled, StepSmoke, StepPruned}

// RollbackSteps lists every point at which Rollback calls AfterStep, in order.
var RollbackSteps = []string{StepSwitchJournaled, StepSwitched, StepSmoke}

// Uninstall step names.
const (
	StepUninstalling = "uninstalling"
	StepUnregistered = "unregistered"
	StepFiles        = "files"
	StepDirsRemoved  = "dirs-removed"
	StepManifestGone = "manifest-removed"
)

// UninstallSteps lists every point at which Uninstall calls AfterStep, in order (the unload
// steps only when the original daemon.json lacked "runtimes").
var UninstallSteps = []string{StepUninstalling, registration.CheckpointUnloadWritten, registration.CheckpointUnloaded,
	registration.CheckpointReverted, StepUnregistered, StepFiles, StepDirsRemoved, StepManifestGone}

// Docker is what the installer needs from the Docker daemon.
type Docker interface {
	registration.Daemon
	ContainersUsing(ctx context.Context, runtime string) ([]dockerapi.Container, error)
	// VolumesOfDriver lists the names of the volumes of a volume driver.
	VolumesOfDriver(ctx context.Context, driver string) ([]string, error)
	// NetworksOfDriver lists the names of the networks of a network driver.
	NetworksOfDriver(ctx context.Context, driver string) ([]string, error)
	HasImage(ctx context.Context, ref string) (bool, error)
	Run(ctx context.Context, o dockerapi.RunOptions) (dockerapi.RunResult, error)
	Close() error
}

// Engines, the values of Options.Engine.
const (
	EngineDocker     = "docker"
	EngineContainerd = "containerd"
)

// Containerd is what the installer needs from containerd (containerdsvc.Daemon).
type Containerd interface {
	// ConfigFile is the main configuration the daemon reads.
	ConfigFile() string
	Running() bool
	MajorVersion(ctx context.Context) (int, error)
	// Dump is the configuration as containerd loads it, imports merged (`config dump`).
	Dump(ctx context.Context) ([]byte, error)
	Restart(ctx context.Context) (containerdsvc.Restart, error)
	StartedAt() time.Time
}

// Host is what the preflight learned about the machine.
type Host struct {
	Report check.Report
	QEMU   hostinfo.QEMU
}

// Deps are the installer's ways to reach the world; tests replace them.
type Deps struct {
	// Preflight is `kata-deploy check`.
	Preflight func(ctx context.Context) Host
	// Docker connects to the daemon and says which daemon.json it reads.
	Docker func(ctx context.Context) (Docker, dockerd.ConfigLocation, error)
	// Containerd finds the containerd serving address, and the configuration it reads.
	Containerd func(ctx context.Context, address, config string) (Containerd, error)
	// BuildImage is guestimage.Build.
	BuildImage func(ctx context.Context, o guestimage.Options) (*guestimage.Manifest, error)
	// FetchKernel downloads the distribution's kernel package into dir.
	FetchKernel func(ctx context.Context, dir string) (string, error)
	// Executable is the running kata-deploy (os.Executable), whose directory holds the artifacts
	// by default.
	Executable func() (string, error)
	Now        func() time.Time
	// StateDir is the runtime's state directory written into its configuration
	// (config.DefaultStateDir when empty); tests give one of their own.
	StateDir string
	// SystemdRuns says whether systemd runs the host (pluginsvc.SystemdRuns when nil);
	// Systemctl drives it (pluginsvc.RunSystemctl when nil).
	SystemdRuns func() bool
	Systemctl   pluginsvc.Systemctl
}

// ErrPreflight is returned when the host cannot run VM containers.
var ErrPreflight = errors.New("the host cannot run VM containers")

// ErrInUse is returned by Uninstall while containers use the runtime (without IgnoreInUse).
var ErrInUse = errors.New("containers are using the runtime")

func (o options) withDefaults() (options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.RuntimeName == "" {
		o.RuntimeName = DefaultRuntimeName
	}
	if o.KernelCache == "" {
		o.KernelCache = DefaultKernelCache
	}
	if o.LockPath == "" {
		o.LockPath = manifest.DefaultLockPath
	}
	if !filepath.IsAbs(o.Prefix) || filepath.Clean(o.Prefix) != o.Prefix || o.Prefix == "/" {
		return o, fmt.Errorf("--prefix %q must be a clean absolute directory other than /", o.Prefix)
	}
	if err := daemonjson.ValidateName(o.RuntimeName); err != nil {
		return o, fmt.Errorf("--runtime-name: %w", err)
	}
	switch o.Accelerator {
	case "", "auto", "kvm", "tcg":
	default:
		return o, fmt.Errorf("--accelerator must be auto, kvm or tcg, not %q", o.Accelerator)
	}
	if o.Kernel != "" && !strings.HasSuffix(o.Kernel, ".deb") {
		return o, fmt.Errorf("--kernel %s: only a kernel package (linux-image-*.deb) is supported for now", o.Kernel)
	}
	if o.KataDir == "" {
		o.KataDir = upstream.DefaultDir
	}
	if !filepath.IsAbs(o.KataDir) || filepath.Clean(o.KataDir) != o.KataDir || o.KataDir == "/" {
		return o, fmt.Errorf("--kata-dir %q must be a clean absolute directory other than /", o.KataDir)
	}
	if o.From != "" && o.Template != nil && *o.Template {
		return o, fmt.Errorf("--template is a setting of kata-deploy's own runtime: an upstream release (--from) keeps its own configuration; set [factory] in it instead")
	}
	if o.From != "" && o.Pool != nil && *o.Pool > 0 {
		return o, fmt.Errorf("--pool is a setting of kata-deploy's own runtime: an upstream release (--from) keeps its own configuration; set [factory] in it instead")
	}
	if o.Pool != nil && (*o.Pool < 0 || *o.Pool > config.MaxPool) {
		return o, fmt.Errorf("--pool %d: the pool holds 0 to %d clones (each waiting clone holds its memory)", *o.Pool, config.MaxPool)
	}
	if o.Pool != nil && *o.Pool > 0 && o.Template != nil && !*o.Template {
		return o, fmt.Errorf("--pool %d needs VM templating (the pool holds clones of the template): drop --template=false, or use --pool 0", *o.Pool)
	}
	if o.From != "" && (o.Kernel != "" || o.ArtifactsDir != "") {
		return o, fmt.Errorf("--from installs an upstream release, which brings its own kernel and shim: drop --kernel and --artifacts-dir")
	}
	switch o.Engine {
	case "":
		o.Engine = EngineDocker
	case EngineDocker, EngineContainerd:
	default:
		return o, fmt.Errorf("--engine must be %q or %q, not %q", EngineDocker, EngineContainerd, o.Engine)
	}
	for flag, p := range map[string]string{"--containerd-config": o.ContainerdConfig, "--containerd-address": o.ContainerdAddress} {
		if p != "" && !filepath.IsAbs(p) {
			return o, fmt.Errorf("%s %q must be an absolute path", flag, p)
		}
	}
	if o.DaemonJSON != "" && !filepath.IsAbs(o.DaemonJSON) {
		return o, fmt.Errorf("--daemon-json %q must be an absolute path", o.DaemonJSON)
	}
	o.Plugin = o.Plugin.withDefaults()
	return o, o.validatePlugin()
}

func (o options) progress(msg string) {
	if o.Progress != nil {
		o.Progress(msg)
	}
}

func (o options) validate() error {
	_, err := o.withDefaults()
	return err
}
