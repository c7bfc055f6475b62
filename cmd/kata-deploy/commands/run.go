package commands

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

// runChange is the shape of every command that changes an install (install, upgrade, rollback,
// uninstall): validate the options (a usage error), run with progress and warnings on stderr
// and the fault-injection hook, print the result, map a failure to its exit code.
//
// A failed run prints only its error in text mode: a summary ("up to date") would contradict
// it. JSON output always carries the result.
func runChange[R any](cmd *cobra.Command, output string, c *install.Common, validate func() error,
	run func(context.Context) (*R, error), text func(io.Writer, *R)) error {
	if err := outputFormat(output); err != nil {
		return err
	}
	if err := validate(); err != nil {
		return usageErrorf("%v", err)
	}
	stderr := cmd.ErrOrStderr()
	c.Progress, c.Warn = progressTo(stderr), warnTo(stderr, output == "text")
	c.AfterStep = faultHook(stderr)
	res, err := run(cmd.Context())
	if res != nil && (err == nil || output == "json") {
		if output == "json" {
			if perr := printJSON(cmd.OutOrStdout(), res); perr != nil {
				return perr
			}
		} else {
			text(cmd.OutOrStdout(), res)
		}
	}
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	return nil
}
