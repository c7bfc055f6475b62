package commands

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

func newStatusCommand() *cobra.Command {
	var (
		o          install.Options
		output     string
		dockerHost string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the install: version, artifacts, registration, what Docker sees, running VM containers",
		Long: `status reports on the install under --prefix without changing anything: its version and
state, every installed file with its recorded sha256 and whether it is still intact, whether
daemon.json holds the entry install wrote, whether Docker lists the runtime, the containers
running with it, and the accelerator (configured, and what works on this host now).

Exit status: 0 installed and healthy, 1 not installed or a problem (listed), 2 usage error.
The JSON output (--output json, schemaVersion 1) only ever gains fields.`,
		Example: `  kata-deploy status
  kata-deploy status --output json | jq .healthy`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			s, err := install.GetStatus(cmd.Context(), o, install.DefaultDeps(dockerHost))
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), s); err != nil {
					return err
				}
			} else {
				printStatus(cmd.OutOrStdout(), s)
			}
			if !s.Healthy {
				return &exitError{code: ExitFailure, err: fmt.Errorf("not installed or not healthy"), silent: true}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Prefix, "prefix", install.DefaultPrefix, "directory of the install")
	f.StringVarP(&dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	f.StringVarP(&output, "output", "o", "text", `output format: "text" or "json"`)
	return cmd
}

func printStatus(w io.Writer, s *install.Status) {
	if !s.Installed {
		fmt.Fprintf(w, "Not installed: no kata-deploy install under %s (run: sudo kata-deploy install).\n", s.Prefix)
		fmt.Fprintf(w, "Accelerator on this host: %s (%s)\n", s.HostAccelerator, s.AcceleratorReason)
		return
	}
	row := func(k, v string) { fmt.Fprintf(w, "  %-14s %s\n", k, v) }
	fmt.Fprintf(w, "kata-deploy install under %s\n", s.Prefix)
	row("State", fmt.Sprintf("%s (version %s)", s.State, s.Version))
	row("Runtime", fmt.Sprintf("%s (default runtime: %s)", s.RuntimeName, yesNo(s.Default)))
	row("Guest kernel", orDash(s.GuestKernel))
	reg := "not registered"
	if s.Registered {
		reg = "registered"
	}
	row("daemon.json", fmt.Sprintf("%s: %s", orDash(s.DaemonJSON), reg))
	docker := "not reachable: " + s.Docker.Error
	if s.Docker.Reachable {
		docker = fmt.Sprintf("lists %s: %s; default runtime %s", s.RuntimeName, yesNo(s.Docker.SeesRuntime), s.Docker.DefaultRuntime)
	}
	row("Docker", docker)
	containers := "none running"
	if n := len(s.Containers); n > 0 {
		var names []string
		for _, c := range s.Containers {
			names = append(names, c.Name+" ("+c.ID+")")
		}
		containers = fmt.Sprintf("%d running: %s", n, strings.Join(names, ", "))
	}
	row("VM containers", containers)
	row("Accelerator", fmt.Sprintf("%s configured; this host: %s (%s)", orDash(s.Accelerator), s.HostAccelerator, s.AcceleratorReason))
	fmt.Fprintln(w, "  Artifacts")
	for _, a := range s.Artifacts {
		fmt.Fprintf(w, "    %-8s %.12s  %s\n", a.State, a.SHA256, a.Path)
	}
	if len(s.Problems) == 0 {
		fmt.Fprintln(w, "Healthy.")
		return
	}
	fmt.Fprintln(w, "Problems:")
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
