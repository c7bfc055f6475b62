package dockerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

// Reload sends SIGHUP to the dockerd process and waits for its "reload" event, which dockerd
// emits only after it applied the new configuration. The event stream is subscribed before the
// signal, and asks for events since just before it, so the event cannot be missed.
func (e *Engine) Reload(ctx context.Context) error {
	timeout := e.ReloadTimeout
	if timeout == 0 {
		timeout = DefaultReloadTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := e.checkStillDockerd(); err != nil {
		return err
	}
	since := time.Now()
	msgs, errs := e.cli.Events(ctx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", string(events.DaemonEventType)), filters.Arg("event", string(events.ActionReload))),
	})
	pid := e.Server.Process.PID
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("sending SIGHUP to dockerd (pid %d): %w (run as root)", pid, err)
	}
	for {
		select {
		case m := <-msgs:
			if m.Type == events.DaemonEventType && m.Action == events.ActionReload {
				return nil
			}
		case err := <-errs:
			if ctx.Err() == nil {
				return fmt.Errorf("watching Docker's events for the reload: %w", err)
			}
			return e.reloadTimeout(timeout)
		case <-ctx.Done():
			return e.reloadTimeout(timeout)
		}
	}
}

func (e *Engine) reloadTimeout(timeout time.Duration) error {
	return fmt.Errorf("dockerd (pid %d) did not confirm a reload within %s: it refused the new daemon.json or did not get the signal; its log says why (journalctl -u docker, or its log file)",
		e.Server.Process.PID, timeout)
}

// checkStillDockerd guards against signalling a recycled pid.
func (e *Engine) checkStillDockerd() error {
	p, err := dockerd.ReadProcess(e.procRoot, e.Server.Process.PID)
	if err != nil {
		return fmt.Errorf("dockerd (pid %d) is gone: %w; is Docker restarting?", e.Server.Process.PID, err)
	}
	if p.Comm != e.Server.Process.Comm {
		return fmt.Errorf("pid %d is now %q, not dockerd: Docker restarted; run the command again", p.PID, p.Comm)
	}
	return nil
}

// Validate runs the daemon's binary with --validate on data, with the running daemon's command
// line, so that options given both as flags and in the file are caught. The binary is the one
// Connect checked (dockerd.TrustedBinary), by its path: root-owned and unwritable by anyone else
// up to /, so it names what was checked; never /proc/PID/exe, which would run whatever a
// process called dockerd was started from. The environment is fixed and minimal (PATH only),
// not the daemon's: nothing in it can change what runs. It returns
// registration.ErrValidateUnsupported for a dockerd without --validate.
func (e *Engine) Validate(ctx context.Context, data []byte) error {
	if e.binary == "" {
		return errors.New("validating daemon.json: the daemon's binary was not checked (not connected with Connect)")
	}
	f, err := os.CreateTemp("", "kata-deploy-daemon-*.json")
	if err != nil {
		return fmt.Errorf("validating daemon.json: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("validating daemon.json: %w", werr)
	}
	p := e.Server.Process
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.binary, ValidateArgs(p.Args, f.Name())...)
	cmd.Args[0] = "dockerd"
	cmd.Env = ValidateEnv(e.binary)
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(out.String())
	if strings.Contains(msg, "unknown flag: --validate") {
		return registration.ErrValidateUnsupported
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("running dockerd --validate: %w", err)
	}
	return fmt.Errorf("dockerd --validate: %s", lastLine(msg))
}

// ValidateArgs turns a dockerd command line (args[0] included) into the arguments of a
// validation run of configFile: every --config-file is dropped, then --validate and the new
// --config-file are appended.
func ValidateArgs(args []string, configFile string) []string {
	var out []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config-file":
			i++ // and its value
			continue
		case strings.HasPrefix(a, "--config-file="):
			continue
		case a == "--":
			i = len(args)
			continue
		}
		out = append(out, a)
	}
	return append(out, "--validate", "--config-file", configFile)
}

// ValidateEnv is the whole environment of a validation run of the dockerd binary bin: a PATH of
// the system's directories, after bin's own directory, where dockerd finds its helpers
// (docker-proxy) when it is not installed in them. That directory passed the same trust check
// as bin itself (dockerd.TrustedBinary), so it adds nothing another user could change.
func ValidateEnv(bin string) []string {
	return []string{"PATH=" + filepath.Dir(bin) + ":/usr/sbin:/usr/bin:/sbin:/bin"}
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
