package commands

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
)

func newUninstallCommand() *cobra.Command {
	var (
		o          install.UninstallOptions
		output     string
		dockerHost string
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the VM runtime and its registration: the host back as it was",
		Long: `uninstall undoes "kata-deploy install" using its manifest (<prefix>/manifest.json):

  - daemon.json: only the changes install made are reverted (later edits of yours survive; an
    entry you changed is kept and reported), Docker is reloaded and checked
  - with containerd: the import install added to its main configuration is cut out (the file is
    byte for byte what it was), the drop-in removed, containerd restarted
  - files: only those install created and that are unchanged since; changed ones are kept and
    reported, and files install replaced with --force are put back
  - directories install created, when empty

After install and uninstall with nothing else changed, daemon.json is byte for byte what it was
and nothing is left under the prefix. While containers use the runtime, uninstall refuses and
lists them, unless --ignore-in-use (or --force). An interrupted uninstall is finished by running it again.

Exit status: 0 uninstalled (or nothing was installed), 1 failed, 2 usage error.`,
		Example: `  sudo kata-deploy uninstall
  sudo kata-deploy uninstall --dry-run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			stderr := cmd.ErrOrStderr()
			o.Progress, o.Warn = progressTo(stderr), warnTo(stderr, output == "text")
			o.AfterStep = faultHook(stderr)
			res, err := install.Uninstall(cmd.Context(), o, install.DefaultDeps(dockerHost))
			if res != nil {
				if output == "json" {
					if perr := printJSON(cmd.OutOrStdout(), res); perr != nil {
						return perr
					}
				} else if err == nil {
					printUninstall(cmd.OutOrStdout(), res)
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
	f.BoolVar(&o.IgnoreInUse, "ignore-in-use", false, "uninstall even while containers use the runtime (they keep running, without their runtime's files)")
	f.BoolVar(&o.IgnoreInUse, "force", false, "the same as --ignore-in-use")
	f.StringVar(&o.ContainerdAddress, "containerd-address", "", "containerd's socket, for an install registered with containerd (default /run/containerd/containerd.sock)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be removed and the daemon.json diff; change nothing")
	f.StringVarP(&dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	f.StringVarP(&output, "output", "o", "text", `output format: "text" or "json"`)
	f.StringVar(&o.LockPath, "lock-file", manifest.DefaultLockPath, "lock that serialises installs and uninstalls")
	_ = f.MarkHidden("lock-file")
	return cmd
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
