// Package commands holds kata-deploy's subcommands. Each file is one command; main only calls Execute.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, documented in README.md.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and its answer is "no" or it failed
	ExitUsage   = 2 // bad flags or arguments
)

// exitError carries an exit code through cobra; the message is already printed when silent.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// Execute runs kata-deploy with args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.silent {
			fmt.Fprintf(stderr, "kata-deploy: %v\n", ee.err)
		}
		if ee.code == ExitUsage {
			fmt.Fprintln(stderr, "Run 'kata-deploy --help' for usage.")
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "kata-deploy: %v\n", err)
	// cobra reports an unknown subcommand as a plain error: it is a usage error all the same.
	if strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(stderr, "Run 'kata-deploy --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

// Root is kata-deploy's command tree, for what is generated from it (man pages, shell
// completions in the packages).
func Root() *cobra.Command { return newRootCommand() }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kata-deploy",
		Short: "Run Docker containers inside lightweight virtual machines",
		Long: `kata-deploy turns a Docker host into one that can run each container inside its own
lightweight virtual machine (the Kata Containers idea), reversibly, with one command.

A container shares the host's kernel: a kernel exploit in one container reaches the host and every
other container. A VM per container puts a hypervisor between the workload and the host.

Start here:
  kata-deploy check                                 can this host run VM containers? what is missing?
  sudo kata-deploy install                          install the runtime and register it with Docker
  docker run --rm --runtime=kata busybox uname -r   prints the guest's kernel, not the host's
  sudo kata-deploy uninstall                        put the host back exactly as it was`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	root.AddCommand(newVersionCommand(), newCheckCommand(), newInstallCommand(), newUninstallCommand(), newStatusCommand(),
		newUpgradeCommand(), newRollbackCommand(), newHoldCommand(), newFleetLaunchCommand())
	return root
}

// noArgs is cobra.NoArgs with our usage exit code.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%q takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// outputFormat validates the --output flag shared by commands that print reports.
func outputFormat(v string) error {
	switch v {
	case "text", "json":
		return nil
	}
	return usageErrorf("--output must be \"text\" or \"json\", not %q", v)
}
