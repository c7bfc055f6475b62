package commands

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

func newRollbackCommand() *cobra.Command {
	var (
		o          install.RollbackOptions
		output     string
		dockerHost string
		hostRoot   string
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Switch back to the version in use before the last upgrade",
		Long:  rollbackLong,
		Example: `  sudo kata-deploy rollback
  sudo kata-deploy rollback --dry-run
  kata-deploy status`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChange(cmd, output, &o.Common, o.Validate,
				func(ctx context.Context) (*install.RollbackResult, error) {
					cleanup, err := enterHost(hostRoot, hostInputs{})
					if err != nil {
						return nil, err
					}
					defer cleanup()
					return install.Rollback(ctx, o, install.DefaultDeps(dockerHost))
				}, printRollback)
		},
	}
	f := cmd.Flags()
	bindPrefix(f, &o.Prefix)
	bindChange(f, &o.Common, &output, "say which version would be switched to")
	bindSmoke(f, &o.SmokeOptions)
	bindDocker(f, &dockerHost, nil)
	bindHostRoot(f, &hostRoot)
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
