package commands

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/version"
)

func newUpgradeCommand() *cobra.Command {
	var (
		o          install.UpgradeOptions
		output     string
		replace    replaceFlags
		dockerHost string
	)
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Install new artifacts beside the old, switch to them atomically, keep the old for rollback",
		Long: `upgrade installs the shim, agent and guest kernel given (by default: the ones next to this
kata-deploy, and the kernel package the install used) as a new version in
<prefix>/versions/<id>/, beside the version in use, then switches the symlink <prefix>/current to
it with one atomic rename. The runtime is registered through current, so daemon.json does not
change and Docker is not reloaded; running containers keep the shim they started with.

The new version is smoke-tested (docker run --rm --runtime=NAME busybox uname -r); if it fails,
current is switched back and the command fails. Exactly one previous version is kept:
"kata-deploy rollback" switches back to it. Older versions are removed.

Artifacts identical to the version in use change nothing. An install made by an earlier
kata-deploy (bin/ and share/ directly under the prefix) is moved into versions: its daemon.json
entry is re-pointed through current and Docker reloaded, once. An interrupted upgrade is finished
by running it again (or undone by "kata-deploy uninstall").

Exit status: 0 upgraded (or nothing to do), 1 failed, 2 usage error.`,
		Example: `  sudo kata-deploy upgrade
  sudo kata-deploy upgrade --dry-run
  sudo kata-deploy upgrade --kernel linux-image-6.1.0-58-amd64_6.1.200-1_amd64.deb
  sudo kata-deploy rollback`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			o.Replace = replace.value()
			if err := o.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			stderr := cmd.ErrOrStderr()
			o.Version = version.Get().Version
			o.Progress, o.Warn = progressTo(stderr), warnTo(stderr, output == "text")
			o.AfterStep = faultHook(stderr)
			res, err := install.Upgrade(cmd.Context(), o, install.DefaultDeps(dockerHost))
			if res != nil && (err == nil || output == "json") {
				if perr := printUpgrade(cmd.OutOrStdout(), res, output); perr != nil {
					return perr
				}
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Prefix, "prefix", install.DefaultPrefix, "directory of the install")
	bindReplace(f, &replace)
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	f.StringVar(&o.Kernel, "kernel", "", "guest kernel package (linux-image-*.deb); default: the one the install used")
	f.StringVar(&o.KernelCache, "kernel-cache", install.DefaultKernelCache, "where a fetched kernel package is kept")
	f.StringVar(&o.ArtifactsDir, "artifacts-dir", "", "directory with containerd-shim-kata-v2 and kata-agent (default: this executable's directory)")
	f.StringVar(&o.DaemonJSON, "config-file", "", "the daemon.json to edit, when it cannot be found from the running dockerd")
	f.StringVar(&o.Accelerator, "accelerator", "", `"kvm", "tcg" or "auto" (default: what works on this host, as "check" says)`)
	f.BoolVar(&o.SkipSmoke, "skip-smoke", false, "do not run the smoke container")
	f.StringVar(&o.SmokeImage, "smoke-image", "", "local image for the smoke container (default: busybox, when present)")
	f.StringVar(&o.ContainerdAddress, "containerd-address", "", "containerd's socket, for an install registered with containerd (default /run/containerd/containerd.sock)")
	f.StringVarP(&dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	f.StringVarP(&output, "output", "o", "text", `output format: "text" or "json" (progress goes to stderr)`)
	f.StringVar(&o.LockPath, "lock-file", manifest.DefaultLockPath, "lock that serialises installs and uninstalls")
	_ = f.MarkHidden("lock-file")
	return cmd
}

func printUpgrade(w io.Writer, r *install.Result, output string) error {
	if output == "json" || r.DryRun || !r.Changed {
		return printInstall(w, r, output)
	}
	switch {
	case r.Migrated:
		fmt.Fprintf(w, "Moved the install under %s into versions: runtime %q now runs version %s", r.Prefix, r.RuntimeName, r.Version)
	case r.PreviousVersion != "":
		fmt.Fprintf(w, "Upgraded runtime %q under %s to version %s (from %s)", r.RuntimeName, r.Prefix, r.Version, r.PreviousVersion)
	default:
		fmt.Fprintf(w, "Runtime %q under %s runs version %s", r.RuntimeName, r.Prefix, r.Version)
	}
	if r.GuestKernel != "" {
		fmt.Fprintf(w, ", guest kernel %s", r.GuestKernel)
	}
	fmt.Fprintln(w, ".")
	printSmoke(w, r.RuntimeName, r.Smoke)
	if r.PreviousVersion != "" {
		fmt.Fprintf(w, "  version %s is kept: `kata-deploy rollback` switches back to it\n", r.PreviousVersion)
	}
	if len(r.Pruned) > 0 {
		fmt.Fprintf(w, "  removed: %s\n", strings.Join(r.Pruned, ", "))
	}
	return nil
}
