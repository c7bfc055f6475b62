package commands

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

func newUninstallCommand() *cobra.Command {
	var (
		o          install.UninstallOptions
		force      bool
		output     string
		dockerHost string
		hostRoot   string
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the VM runtime and its registration: the host back as it was",
		Long:  uninstallLong,
		Example: `  sudo kata-deploy uninstall
  sudo kata-deploy uninstall --dry-run
  docker volume ls --filter driver=kata-block    # volumes that keep uninstall from removing the plugin`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			applyForce(&o, force)
			return runChange(cmd, output, &o.Common, o.Validate,
				func(ctx context.Context) (*install.UninstallResult, error) {
					cleanup, err := enterHost(hostRoot, hostInputs{})
					if err != nil {
						return nil, err
					}
					defer cleanup()
					return install.Uninstall(ctx, o, install.DefaultDeps(dockerHost))
				}, printUninstall)
		},
	}
	f := cmd.Flags()
	bindPrefix(f, &o.Prefix)
	f.BoolVar(&o.IgnoreInUse, "ignore-in-use", false, "uninstall even while containers use the runtime (they keep running, without their runtime's files)")
	f.BoolVar(&force, "force", false, "--ignore-in-use, and remove the plugin of --with-plugins even while Docker has volumes of it (listed; their images stay)")
	bindChange(f, &o.Common, &output, "print what would be removed and the daemon.json diff")
	bindDocker(f, &dockerHost, nil)
	bindContainerd(f, &o.ContainerdAddress, nil, nil)
	bindHostRoot(f, &hostRoot)
	return cmd
}

// applyForce: --force is --ignore-in-use, and removes the plugin even while volumes of it remain.
func applyForce(o *install.UninstallOptions, force bool) {
	o.IgnoreInUse = o.IgnoreInUse || force
	o.RemovePluginWithVolumes = force
}

func printUninstall(w io.Writer, r *install.UninstallResult) {
	if !r.Installed {
		fmt.Fprintf(w, "Nothing to uninstall: no kata-deploy install under %s.\n", r.Prefix)
		return
	}
	verb := "Uninstalled"
	if r.DryRun {
		verb = "Would uninstall"
	}
	fmt.Fprintf(w, "%s runtime %q from %s.\n", verb, r.RuntimeName, r.Prefix)
	if r.DaemonJSON != "" {
		fmt.Fprintf(w, "  daemon.json %s: kata-deploy's changes reverted\n", r.DaemonJSON)
	}
	if r.ContainerdConfig != "" {
		fmt.Fprintf(w, "  containerd: the import in %s and the drop-in removed", r.ContainerdConfig)
		if c := r.ContainerdRestart; c != nil && c.Restarted {
			fmt.Fprintf(w, "; %s restarted", c.Unit)
		}
		fmt.Fprintln(w)
	}
	if r.Plugin != "" {
		fmt.Fprintf(w, "  volume plugin %s: stopped and removed\n", r.Plugin)
	}
	if len(r.PluginVolumes) > 0 {
		fmt.Fprintf(w, "  left behind (--force): Docker's volumes %s of driver %s, their images in %s\n", strings.Join(r.PluginVolumes, ", "), r.Plugin, r.PluginStateKept)
	}
	if len(r.PluginNetworks) > 0 {
		fmt.Fprintf(w, "  left behind (--force): Docker's networks %s of the plugins' network driver\n", strings.Join(r.PluginNetworks, ", "))
	}
	if len(r.Removed) > 0 {
		fmt.Fprintf(w, "  removed: %s\n", strings.Join(r.Removed, ", "))
	}
	if len(r.Restored) > 0 {
		fmt.Fprintf(w, "  restored (there before install): %s\n", strings.Join(r.Restored, ", "))
	}
	if len(r.Kept) > 0 {
		fmt.Fprintf(w, "  kept (changed since install): %s\n", strings.Join(r.Kept, ", "))
	}
	if r.DaemonJSONDiff != "" {
		fmt.Fprintf(w, "\n%s", r.DaemonJSONDiff)
	}
	if r.ContainerdDiff != "" {
		fmt.Fprintf(w, "\n%s", r.ContainerdDiff)
	}
}
