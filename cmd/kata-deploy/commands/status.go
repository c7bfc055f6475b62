package commands

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

func newStatusCommand() *cobra.Command {
	var (
		o          install.StatusOptions
		output     string
		dockerHost string
		hostRoot   string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the install: version, artifacts, registration, what Docker sees, running VM containers",
		Long:  statusLong,
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
			cleanup, err := enterHost(hostRoot, hostInputs{})
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			defer cleanup()
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
	bindPrefix(f, &o.Prefix)
	bindContainerd(f, &o.ContainerdAddress, nil, nil)
	bindDocker(f, &dockerHost, nil)
	bindOutput(f, &output)
	bindHostRoot(f, &hostRoot)
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
	switch {
	case s.Upstream != nil:
		row("Release", fmt.Sprintf("upstream Kata Containers %s in %s (from %s)", orDash(s.Upstream.Version), s.Upstream.Dir, s.Upstream.Tarball))
	case s.Layout == "flat":
		row("Version", "- (installed by an earlier kata-deploy without versions)")
	case s.CurrentVersion != nil:
		row("Version", describeVersion(s.CurrentVersion)+" (current)")
	}
	if s.PreviousVersion != nil {
		row("Previous", describeVersion(s.PreviousVersion)+" (kata-deploy rollback)")
	}
	for _, v := range s.OtherVersions {
		row("Leftover", describeVersion(&v))
	}
	reg := "not registered"
	if s.Registered {
		reg = "registered"
	}
	if c := s.Containerd; c != nil {
		row("containerd", fmt.Sprintf("%s imported by %s: %s; running: %s; its configuration has %s: %s; restart pending: %s",
			c.DropIn, c.Config, yesNo(c.Imported), yesNo(c.Running), s.RuntimeName, yesNo(c.SeesRuntime), yesNo(c.RestartPending)))
	} else {
		row("daemon.json", fmt.Sprintf("%s: %s", orDash(s.DaemonJSON), reg))
		docker := "not reachable: " + s.Docker.Error
		if s.Docker.Reachable {
			docker = fmt.Sprintf("lists %s: %s; default runtime %s", s.RuntimeName, yesNo(s.Docker.SeesRuntime), s.Docker.DefaultRuntime)
		}
		row("Docker", docker)
	}
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
	if p := s.Plugin; p != nil {
		row("Plugin", describePlugin(p))
	}
	if f := s.Factory; f != nil {
		row("Templating", describeFactory(f))
		for _, t := range f.Templates {
			row("Template", describeTemplate(t))
		}
		if f.Template || f.Pool > 0 || len(f.PoolFill) > 0 {
			row("Pool", describePool(f))
		}
		for _, p := range f.PoolFill {
			row("Pool fill", describePoolFill(p))
		}
	}
	fmt.Fprintln(w, "  Artifacts")
	for _, a := range s.Artifacts {
		fmt.Fprintf(w, "    %-8s %.12s  %s\n", a.State, a.SHA256, a.Path)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "  Note: %s\n", n)
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

func describeVersion(v *install.VersionStatus) string {
	d := fmt.Sprintf("%s, installed %s", v.ID, v.Created.Local().Format("2006-01-02 15:04"))
	if v.KataDeployVersion != "" {
		d += " by kata-deploy " + v.KataDeployVersion
	}
	if v.GuestKernel != "" {
		d += ", guest kernel " + v.GuestKernel
	}
	if !v.Intact {
		d += ", DAMAGED (a file is missing or changed)"
	}
	return d
}

// describePlugin is the status line of the plugin service of --with-plugins.
func describePlugin(p *install.PluginStatus) string {
	how := p.Mode
	if p.Unit != "" {
		how = "systemd unit " + p.Unit
	}
	running := "not running"
	if p.Running {
		running = fmt.Sprintf("running (pid %d)", p.PID)
	}
	volumes := "volumes: Docker not reachable"
	if p.Volumes != nil {
		volumes = fmt.Sprintf("%d volume(s)", *p.Volumes)
	}
	line := fmt.Sprintf("volume driver %s (%s): %s; socket %s reachable: %s; %s", p.Name, how, running, p.Socket, yesNo(p.SocketReachable), volumes)
	if p.NetworkName == "" {
		return line
	}
	networks := "networks: Docker not reachable"
	if p.Networks != nil {
		networks = fmt.Sprintf("%d network(s)", *p.Networks)
	}
	return line + fmt.Sprintf("; network driver %s reachable: %s; %s", p.NetworkName, yesNo(p.NetworkSocketReachable), networks)
}

// describeFactory is the status line of VM templating.
func describeFactory(f *install.FactoryStatus) string {
	d := "off (kata-deploy install --template turns it on)"
	if f.Template {
		d = "on ([factory] template = true)"
	}
	if f.TemplatesDir != "" {
		d += fmt.Sprintf("; %d template(s) in %s", len(f.Templates), f.TemplatesDir)
	}
	if f.Error != "" {
		d += "; " + f.Error
	}
	return d
}

// describePool is the status line of the pool of clones.
func describePool(f *install.FactoryStatus) string {
	d := "off (kata-deploy install --template --pool N keeps N clones waiting)"
	if f.Pool > 0 {
		d = fmt.Sprintf("on: %d clone(s) kept waiting ([factory] pool = %d)", f.Pool, f.Pool)
		if !f.Template {
			d += ", but templating is off"
		}
	}
	if f.PoolDir != "" && (f.Pool > 0 || len(f.PoolFill) > 0) {
		d += fmt.Sprintf("; %d waiting in %s", f.PoolWaiting(), f.PoolDir)
	}
	if len(f.PoolFillers) > 0 {
		var pids []string
		for _, p := range f.PoolFillers {
			pids = append(pids, fmt.Sprint(p))
		}
		d += "; being filled (pid " + strings.Join(pids, ", ") + ")"
	}
	return d
}

// describePoolFill is the status line of the clones of one template in the pool.
func describePoolFill(p install.PoolFill) string {
	return fmt.Sprintf("%s: %d waiting, %d starting, %d taken", p.Key, p.Waiting, p.Starting, p.Taken)
}

// describeTemplate is the status line of one VM template.
func describeTemplate(t install.TemplateStatus) string {
	facts := []string{"not ready"}
	if t.Ready {
		facts = []string{fmt.Sprintf("ready, %d MiB and %d vCPUs", t.MemoryMiB, t.VCPUs)}
	}
	facts = append(facts, fmt.Sprintf("%.1f MiB of memory file on disk", float64(t.MemoryBytes)/(1<<20)))
	if t.Created != nil {
		facts = append(facts, "built "+(time.Duration(t.AgeSeconds)*time.Second).String()+" ago")
	}
	if t.LastUsed != nil {
		facts = append(facts, "last clone "+t.LastUsed.Local().Format("2006-01-02 15:04:05"))
	}
	if t.Failed != "" {
		facts = append(facts, "last build failed: "+t.Failed)
	}
	return t.Key + ": " + strings.Join(facts, ", ")
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
