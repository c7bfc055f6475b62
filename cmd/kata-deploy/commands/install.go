package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/version"
)

// faultEnv names a step after which kata-deploy kills itself with SIGKILL: the fault-injection
// hook of the tests that prove a run killed anywhere is completed by the next one.
const faultEnv = "KATA_DEPLOY_FAULT_AFTER"

func newInstallCommand() *cobra.Command {
	var (
		o          install.InstallOptions
		output     string
		replace    replaceFlags
		dockerHost string
		hostRoot   string
		template   bool
		pool       int
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the VM runtime and register it with Docker",
		Long:  installLong,
		Example: `  sudo kata-deploy install
  sudo kata-deploy install --dry-run
  sudo kata-deploy install --kernel linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb --set-default-runtime
  docker run --rm --runtime=kata busybox uname -r
  sudo kata-deploy install --with-plugins           # also the kata-block volume plugin
  sudo kata-deploy install --template               # VM templating: containers start as clones
  sudo kata-deploy install --template --pool 2      # and 2 clones kept waiting for the next containers
  sudo kata-deploy install --engine containerd      # Kubernetes node: RuntimeClass handler "kata"
  sudo kata-deploy install --from kata-static-3.18.0-amd64.tar.zst`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Replace, o.Version = replace.value(), version.Get().Version
			if cmd.Flags().Changed("template") {
				o.Template = &template // unset: the version in use keeps its setting
			}
			if cmd.Flags().Changed("pool") {
				o.Pool = &pool
			}
			return runChange(cmd, output, &o.Common, o.Validate,
				func(ctx context.Context) (*install.Result, error) {
					o.Plugin.FromContainer = hostRoot != ""
					cleanup, err := enterHost(hostRoot, hostInputs{artifacts: &o.ArtifactOptions, from: &o.From, dryRun: o.DryRun, plugins: o.WithPlugins})
					if err != nil {
						return nil, err
					}
					defer cleanup()
					return install.Install(ctx, o, install.DefaultDeps(dockerHost))
				}, printInstall)
		},
	}
	f := cmd.Flags()
	bindPrefix(f, &o.Prefix)
	bindRuntimeName(f, &o)
	bindReplace(f, &replace)
	bindChange(f, &o.Common, &output, "print the plan and the daemon.json diff")
	bindArtifacts(f, &o.ArtifactOptions, "the distribution's, fetched with apt-get download")
	bindDocker(f, &dockerHost, &o.DaemonJSON)
	f.StringVar(&o.From, "from", "", "install an upstream Kata Containers release instead (kata-static-<version>-<arch>.tar.xz or .tar.zst), extracted to /opt/kata")
	f.StringVar(&o.KataDir, "kata-dir", "", "where --from extracts the release (default /opt/kata, where its configuration expects it)")
	_ = f.MarkHidden("kata-dir")
	bindContainerd(f, &o.ContainerdAddress, &o.Engine, &o.ContainerdConfig)
	bindSmoke(f, &o.SmokeOptions)
	bindPlugins(f, &o)
	bindTemplate(f, &template)
	bindPool(f, &pool)
	bindHostRoot(f, &hostRoot)
	return cmd
}

func progressTo(w io.Writer) func(string) {
	return func(s string) { fmt.Fprintf(w, "==> %s\n", s) }
}

// warnTo prints warnings as they happen in text mode; JSON output carries them in its summary.
func warnTo(w io.Writer, now bool) func(string) {
	return func(s string) {
		if now {
			fmt.Fprintf(w, "warning: %s\n", s)
		}
	}
}

// faultHook returns the AfterStep hook that kills this process after the step named in
// $KATA_DEPLOY_FAULT_AFTER, as abruptly as a power cut or the OOM killer would.
func faultHook(w io.Writer) func(string) {
	want := os.Getenv(faultEnv)
	if want == "" {
		return nil
	}
	return func(step string) {
		if step == want {
			fmt.Fprintf(w, "kata-deploy: %s=%s: killing myself (SIGKILL)\n", faultEnv, step)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printInstall prints what install did, in text.
func printInstall(w io.Writer, r *install.Result) {
	switch {
	case r.DryRun:
		printPlan(w, r)
	case !r.Changed:
		fmt.Fprintf(w, "kata-deploy is installed under %s and up to date: nothing changed.\n", r.Prefix)
	case r.Stanza != "":
		fmt.Fprintf(w, "Installed runtime %q under %s, but daemon.json is not writable here. Add this to Docker's daemon configuration, then reload Docker:\n\n%s\n", r.RuntimeName, r.Prefix, r.Stanza)
	default:
		printInstalled(w, r)
	}
}

func printPlan(w io.Writer, r *install.Result) {
	if len(r.Actions) == 0 {
		fmt.Fprintf(w, "Nothing to do: kata-deploy is installed under %s and up to date.\n", r.Prefix)
		return
	}
	fmt.Fprintf(w, "Plan for runtime %q under %s (dry run: nothing was changed):\n", r.RuntimeName, r.Prefix)
	width := 0
	for _, a := range r.Actions {
		width = max(width, len(a.Op))
	}
	for _, a := range r.Actions {
		fmt.Fprintf(w, "  %-*s  %s", width, a.Op, a.Target)
		if a.Detail != "" {
			fmt.Fprintf(w, "  (%s)", a.Detail)
		}
		fmt.Fprintln(w)
	}
	if r.DaemonJSONDiff != "" {
		fmt.Fprintf(w, "\n%s", r.DaemonJSONDiff)
	}
	if r.ContainerdDiff != "" {
		fmt.Fprintf(w, "\n%s", r.ContainerdDiff)
	}
	if r.Stanza != "" {
		fmt.Fprintf(w, "\nStanza to add to daemon.json by hand:\n%s", r.Stanza)
	}
}

func printInstalled(w io.Writer, r *install.Result) {
	fmt.Fprintf(w, "Installed runtime %q under %s", r.RuntimeName, r.Prefix)
	var facts []string
	if r.Upstream != "" {
		facts = append(facts, "upstream Kata Containers "+r.Upstream)
	}
	if r.Version != "" {
		facts = append(facts, "version "+r.Version)
	}
	if r.GuestKernel != "" {
		facts = append(facts, "guest kernel "+r.GuestKernel)
	}
	if r.Accelerator != "" {
		facts = append(facts, "accelerator "+r.Accelerator)
	}
	if r.Template {
		facts = append(facts, "VM templating on")
	}
	if r.Pool > 0 {
		facts = append(facts, fmt.Sprintf("a pool of %d waiting clone(s)", r.Pool))
	}
	if len(facts) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(facts, ", "))
	}
	fmt.Fprintln(w, ".")
	if r.DaemonJSON != "" {
		reload := ""
		if r.Reloaded {
			reload = "; Docker reloaded and lists it"
		}
		fmt.Fprintf(w, "  registered in %s%s\n", r.DaemonJSON, reload)
	}
	if r.ContainerdDropIn != "" {
		printContainerd(w, r)
	}
	printSmoke(w, r.RuntimeName, r.Smoke)
	printPlugin(w, r.Plugin)
	if r.PreviousVersion != "" {
		fmt.Fprintf(w, "  replaces version %s, which is kept: `kata-deploy rollback` switches back to it\n", r.PreviousVersion)
	}
	if r.Migrated {
		fmt.Fprintln(w, "  the install of an earlier kata-deploy was moved into versions")
	}
	if r.Engine == install.EngineContainerd {
		fmt.Fprintf(w, "Try: a pod with a RuntimeClass whose handler is %q (kubectl apply a RuntimeClass, then runtimeClassName in the pod spec)\n", r.RuntimeName)
		return
	}
	fmt.Fprintf(w, "Try: docker run --rm --runtime=%s busybox uname -r\n", r.RuntimeName)
}

func printPlugin(w io.Writer, p *install.PluginResult) {
	if p == nil {
		return
	}
	how := "a process of its own session, pid " + fmt.Sprint(p.PID)
	if p.Unit != "" {
		how = "systemd unit " + p.Unit
	}
	fmt.Fprintf(w, "  volume plugin %s serves %s (%s): docker volume create -d %s -o size=1G NAME\n", p.Name, p.Socket, how, p.Name)
}

func printContainerd(w io.Writer, r *install.Result) {
	fmt.Fprintf(w, "  registered with containerd by %s (imported by %s)", r.ContainerdDropIn, r.ContainerdConfig)
	switch c := r.Containerd; {
	case c == nil:
	case c.Restarted:
		fmt.Fprintf(w, "; %s restarted", c.Unit)
	case c.Pending:
		fmt.Fprint(w, "; containerd must be restarted to load it (see the warning above)")
	}
	fmt.Fprintln(w)
}

func printSmoke(w io.Writer, runtime string, s *install.Smoke) {
	if s == nil {
		return
	}
	switch {
	case s.Skipped != "":
		fmt.Fprintf(w, "  smoke test skipped (%s)\n", s.Skipped)
	case s.Error == "":
		fmt.Fprintf(w, "  smoke test: docker run --rm --runtime=%s %s uname -r -> %s in %.1f s\n", runtime, s.Image, s.GuestKernel, s.Seconds)
	}
}
