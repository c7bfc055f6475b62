package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
)

func newCheckCommand() *cobra.Command {
	var (
		output     string
		dockerHost string
		hostRoot   string
		opts       = check.Options{DockerTimeout: 10 * time.Second}
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check whether this host can run containers inside VMs, and what to fix",
		Long: `check inspects the host (distribution, kernel, cgroups), virtualization (CPU flags, whether KVM
really works or the runtime must fall back to emulation), the devices the runtime uses, QEMU and
its fast-boot firmware, the Docker daemon (version, the daemon.json it really reads, registered
runtimes) and existing Kata installs. Each line says ok, warn or fail, what was found and, for
warn and fail, what to do.

Exit status: 0 when the host can run VM containers (warnings included, e.g. emulation instead of
KVM), 1 when it cannot, 2 on usage errors.

The JSON output (--output json) is a stable schema for scripts: see README.md, "check --output json".`,
		Example: `  kata-deploy check
  kata-deploy check --output json | jq .accelerator
  DOCKER_HOST=unix:///run/user/1000/docker.sock kata-deploy check`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			if err := checkPluginNames(opts); err != nil {
				return err
			}
			cleanup, err := enterHost(hostRoot, hostInputs{})
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			defer cleanup()
			opts.DockerHost = dockerHost
			facts := check.Gather(cmd.Context(), opts)
			report := check.Evaluate(facts)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), &report)
			}
			if !report.CanRunVMContainers {
				return &exitError{code: ExitFailure, err: fmt.Errorf("this host cannot run VM containers"), silent: true}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", `output format: "text" or "json"`)
	cmd.Flags().StringVarP(&dockerHost, "host", "H", "", "Docker daemon to check (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	bindHostRoot(cmd.Flags(), &hostRoot)
	bindCheckPlugins(cmd.Flags(), &opts)
	return cmd
}

// checkPluginNames refuses driver names that are not plain file names (they become socket paths).
func checkPluginNames(o check.Options) error {
	for _, n := range []string{o.VolumeDriver, o.NetworkDriver} {
		if n != "" && !pluginsvc.ValidName(n) {
			return usageErrorf("plugin driver name %q is invalid: use lower-case letters, digits, '_', '.', '-' (at most 64)", n)
		}
	}
	if d := o.PluginSocketDir; d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) != d) {
		return usageErrorf("--plugin-socket-dir %q must be a clean absolute path", d)
	}
	return nil
}

// bindCheckPlugins binds the names of the plugin drivers check reports, hidden like install's
// (the tests install drivers of their own beside the host's).
func bindCheckPlugins(f *pflag.FlagSet, o *check.Options) {
	f.StringVar(&o.VolumeDriver, "plugin-name", "", "name of the volume driver (default kata-block)")
	f.StringVar(&o.NetworkDriver, "plugin-network-name", "", "name of the network driver (default kata-net)")
	f.StringVar(&o.PluginSocketDir, "plugin-socket-dir", "", "directory Docker finds plugin sockets in (default /run/docker/plugins)")
	for _, name := range []string{"plugin-name", "plugin-network-name", "plugin-socket-dir"} {
		_ = f.MarkHidden(name)
	}
}

func printReport(w io.Writer, r *check.Report) {
	width := 0
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			width = max(width, len(l.Name))
		}
	}
	for _, s := range r.Sections {
		fmt.Fprintf(w, "%s\n", s.Name)
		for _, l := range s.Lines {
			fmt.Fprintf(w, "  %-4s  %-*s  %s\n", statusWord(l.Status), width, l.Name, l.Value)
			if l.Remedy != "" {
				fmt.Fprintf(w, "  %-4s  %-*s  -> %s\n", "", width, "", l.Remedy)
			}
		}
	}
	fmt.Fprintln(w)
	failed, warned := count(r, check.Fail), count(r, check.Warn)
	switch {
	case failed > 0:
		fmt.Fprintf(w, "This host cannot run VM containers: %d check(s) failed, %d warning(s). Fix the lines marked FAIL.\n", failed, warned)
	case warned > 0:
		fmt.Fprintf(w, "This host can run VM containers (accelerator %s), with %d warning(s).\n", r.Accelerator, warned)
	default:
		fmt.Fprintf(w, "This host can run VM containers (accelerator %s).\n", r.Accelerator)
	}
}

func statusWord(s check.Status) string { return strings.ToUpper(string(s)) }

func count(r *check.Report, st check.Status) int {
	n := 0
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			if l.Status == st {
				n++
			}
		}
	}
	return n
}
