package commands

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/version"
)

func newUpgradeCommand() *cobra.Command {
	var (
		o          install.UpgradeOptions
		output     string
		replace    replaceFlags
		dockerHost string
		hostRoot   string
	)
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Install new artifacts beside the old, switch to them atomically, keep the old for rollback",
		Long:  upgradeLong,
		Example: `  sudo kata-deploy upgrade
  sudo kata-deploy upgrade --dry-run
  sudo kata-deploy upgrade --kernel linux-image-6.1.0-58-amd64_6.1.200-1_amd64.deb
  sudo kata-deploy rollback`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Replace, o.Version = replace.value(), version.Get().Version
			return runChange(cmd, output, &o.Common, o.Validate,
				func(ctx context.Context) (*install.Result, error) {
					cleanup, err := enterHost(hostRoot, hostInputs{artifacts: &o.ArtifactOptions, dryRun: o.DryRun})
					if err != nil {
						return nil, err
					}
					defer cleanup()
					return install.Upgrade(ctx, o, install.DefaultDeps(dockerHost))
				}, printUpgrade)
		},
	}
	f := cmd.Flags()
	bindPrefix(f, &o.Prefix)
	bindReplace(f, &replace)
	bindChange(f, &o.Common, &output, "print the plan")
	bindArtifacts(f, &o.ArtifactOptions, "the one the install used")
	bindDocker(f, &dockerHost, &o.DaemonJSON)
	bindContainerd(f, &o.ContainerdAddress, nil, nil)
	bindSmoke(f, &o.SmokeOptions)
	bindHostRoot(f, &hostRoot)
	return cmd
}

// printUpgrade prints what upgrade did, in text.
func printUpgrade(w io.Writer, r *install.Result) {
	if r.DryRun || !r.Changed {
		printInstall(w, r)
		return
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
}
