package commands

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
)

func newRollbackCommand() *cobra.Command {
	var (
		o          install.RollbackOptions
		output     string
		dockerHost string
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Switch back to the version in use before the last upgrade",
		Long: `rollback points <prefix>/current back at the previous version (the one the last upgrade
replaced), with one atomic rename. daemon.json does not change and Docker is not reloaded; running
containers keep the shim they started with, new ones start with the previous version. The
version rolled back from becomes the previous one, so a second rollback undoes the first.

The previous version must be complete and unchanged (its files are checked first). The version
rolled back to is smoke-tested unless --skip-smoke.

Exit status: 0 rolled back, 1 failed or nothing to roll back to, 2 usage error.`,
		Example: `  sudo kata-deploy rollback
  sudo kata-deploy rollback --dry-run
  kata-deploy status`,
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
			res, err := install.Rollback(cmd.Context(), o, install.DefaultDeps(dockerHost))
			if res != nil && (err == nil || output == "json") {
				if output == "json" {
					if perr := printJSON(cmd.OutOrStdout(), res); perr != nil {
						return perr
					}
				} else {
					printRollback(cmd.OutOrStdout(), res)
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
	f.BoolVar(&o.DryRun, "dry-run", false, "say which version would be switched to; change nothing")
	f.BoolVar(&o.SkipSmoke, "skip-smoke", false, "do not run the smoke container")
	f.StringVar(&o.SmokeImage, "smoke-image", "", "local image for the smoke container (default: busybox, when present)")
	f.StringVarP(&dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	f.StringVarP(&output, "output", "o", "text", `output format: "text" or "json"`)
	f.StringVar(&o.LockPath, "lock-file", manifest.DefaultLockPath, "lock that serialises installs and uninstalls")
	_ = f.MarkHidden("lock-file")
	return cmd
}

func printRollback(w io.Writer, r *install.RollbackResult) {
	verb := "Rolled back"
	if r.DryRun {
		verb = "Would roll back"
	}
	fmt.Fprintf(w, "%s runtime %q under %s from version %s to %s", verb, r.RuntimeName, r.Prefix, r.From, r.To)
	if r.GuestKernel != "" {
		fmt.Fprintf(w, " (guest kernel %s)", r.GuestKernel)
	}
	fmt.Fprintln(w, ".")
	printSmoke(w, r.RuntimeName, r.Smoke)
	if !r.DryRun {
		fmt.Fprintf(w, "  version %s is kept: `kata-deploy rollback` again switches back to it\n", r.From)
	}
}
