package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
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
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the VM runtime and register it with Docker",
		Long: `install puts the VM runtime on this host and registers it with the running Docker daemon:

  1. preflight: the checks of "kata-deploy check"; a failing one stops here, with its remedy
  2. the guest image (an uncompressed vmlinux and an initrd whose /init is the agent), built from
     the distribution's own kernel package (fetched with apt-get download) or --kernel
  3. the shim and configuration-qemu.toml (QEMU, accelerator, firmware detected here) under --prefix
  4. the runtime entry in the daemon.json the running dockerd reads, validated with
     dockerd --validate, Docker reloaded (SIGHUP) and checked; any failure restores daemon.json
  5. a smoke container (docker run --rm --runtime=NAME busybox uname -r) that must print the
     guest kernel

The artifacts go into <prefix>/versions/<id>/ and <prefix>/current points at them; the runtime
is registered through current, so "kata-deploy upgrade" and "kata-deploy rollback" switch
versions with one atomic rename, without touching daemon.json.

With --from kata-static-<version>-<arch>.tar.xz (or .tar.zst; kata-go-static-… from 4.1), the
upstream Kata Containers release replaces steps 2 and 3: it is extracted to /opt/kata, where its
configuration expects it, every entry checked first (relative paths under opt/kata/ only, no
"..", only files, directories and symlinks, no symlink leading out, bounded sizes), through a
staging directory renamed into place; an /opt/kata kata-deploy did not install is refused, or
moved aside with --replace-foreign (or --force) and put back by uninstall. The runtime is registered with the release's
bin/containerd-shim-kata-v2 and options.ConfigPath
/opt/kata/share/defaults/kata-containers/configuration-qemu.toml. A refused tarball leaves nothing.

With --engine containerd (a Kubernetes node without Docker), step 4 is a drop-in
<config dir>/conf.d/kata-deploy-NAME.toml registering the runtime with containerd's CRI (type
io.containerd.kata.v2, runtime_path and options.ConfigPath, in the main configuration's version
2, 3 or 4), added to the main configuration's imports unless an entry already covers it, checked
with "containerd config dump"; containerd is restarted (systemctl restart when systemd runs it,
otherwise you are told to) and there is no smoke container. Use NAME as a RuntimeClass handler.

Everything is recorded in <prefix>/manifest.json, step by step, so "kata-deploy uninstall" puts
the host back exactly as it was, and an interrupted install is finished by running it again.
A second install with the same inputs changes nothing. --dry-run prints the plan and the
daemon.json diff without changing anything.

The shim (containerd-shim-kata-v2) and the agent (kata-agent, static) are taken from the
directory of this kata-deploy executable ("make build" puts all three in bin/) or --artifacts-dir.

Exit status: 0 installed (or nothing to do), 1 failed (the message says what was left and how to
finish), 2 usage error.`,
		Example: `  sudo kata-deploy install
  sudo kata-deploy install --dry-run
  sudo kata-deploy install --kernel linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb --default
  docker run --rm --runtime=kata busybox uname -r
  sudo kata-deploy install --engine containerd      # Kubernetes node: RuntimeClass handler "kata"
  sudo kata-deploy install --from kata-static-3.18.0-amd64.tar.zst`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			o.Replace = replace.value()
			if err := o.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			stderr := cmd.ErrOrStderr()
			o.Version = version.Get().Version
			o.Progress, o.Warn = progressTo(stderr), warnTo(stderr, output == "text")
			o.AfterStep = faultHook(stderr)
			res, err := install.Install(cmd.Context(), o, install.DefaultDeps(dockerHost))
			// A failed install prints only its error in text mode: a summary ("up to date") would
			// contradict it. JSON output always carries the result.
			if res != nil && (err == nil || output == "json") {
				if perr := printInstall(cmd.OutOrStdout(), res, output); perr != nil {
					return perr
				}
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Prefix, "prefix", install.DefaultPrefix, "directory to install into")
	f.StringVar(&o.RuntimeName, "runtime-name", install.DefaultRuntimeName, "name of the runtime in Docker (docker run --runtime=NAME)")
	f.BoolVar(&o.SetDefaultRuntime, "default", false, "also make it Docker's default runtime (default-runtime in daemon.json)")
	bindReplace(f, &replace)
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan and the daemon.json diff; change nothing")
	f.StringVar(&o.Kernel, "kernel", "", "guest kernel package (linux-image-*.deb); default: the distribution's, fetched with apt-get download")
	f.StringVar(&o.KernelCache, "kernel-cache", install.DefaultKernelCache, "where the fetched kernel package is kept")
	f.StringVar(&o.ArtifactsDir, "artifacts-dir", "", "directory with containerd-shim-kata-v2 and kata-agent (default: this executable's directory)")
	f.StringVar(&o.DaemonJSON, "config-file", "", "the daemon.json to edit, when it cannot be found from the running dockerd")
	f.StringVar(&o.Accelerator, "accelerator", "", `"kvm", "tcg" or "auto" (default: what works on this host, as "check" says)`)
	f.StringVar(&o.From, "from", "", "install an upstream Kata Containers release instead (kata-static-<version>-<arch>.tar.xz or .tar.zst), extracted to /opt/kata")
	f.StringVar(&o.KataDir, "kata-dir", "", "where --from extracts the release (default /opt/kata, where its configuration expects it)")
	_ = f.MarkHidden("kata-dir")
	f.StringVar(&o.Engine, "engine", install.EngineDocker, `register with "docker" (daemon.json) or "containerd" (a drop-in under its imports, for Kubernetes nodes)`)
	f.StringVar(&o.ContainerdAddress, "containerd-address", "", "containerd's socket, with --engine containerd (default /run/containerd/containerd.sock)")
	f.StringVar(&o.ContainerdConfig, "containerd-config", "", "containerd's main configuration, when containerd is not running (default: what the running containerd reads, else /etc/containerd/config.toml)")
	f.BoolVar(&o.SkipSmoke, "skip-smoke", false, "do not run the smoke container")
	f.StringVar(&o.SmokeImage, "smoke-image", "", "local image for the smoke container (default: busybox, when present)")
	f.StringVarP(&dockerHost, "host", "H", "", "Docker daemon (default: $DOCKER_HOST or unix:///var/run/docker.sock)")
	f.StringVarP(&output, "output", "o", "text", `output format: "text" or "json" (progress goes to stderr)`)
	f.StringVar(&o.LockPath, "lock-file", manifest.DefaultLockPath, "lock that serialises installs and uninstalls")
	_ = f.MarkHidden("lock-file")
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

func printInstall(w io.Writer, r *install.Result, output string) error {
	if output == "json" {
		return printJSON(w, r)
	}
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
	return nil
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
