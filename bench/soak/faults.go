package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
)

// A fault is done to a running kata container; then expect says what the container's state must
// be (and checks it), and the container is removed. Afterwards the host must be as before.
type fault struct {
	name   string
	inject func(ctx context.Context, w *world, id string) error
	// expect checks the container after the fault and returns what happened, in words.
	expect func(ctx context.Context, w *world, name string) (string, error)
}

var faults = []fault{
	{"QEMU killed", killProcess(vmProcessOf), expectExited},
	{"shim killed", killProcess(shimProcessOf), expectExited},
	{"dockerd restarted", restartDaemon("dockerd"), expectExited},
	{"dockerd restarted with live-restore", restartDockerdLiveRestore, expectStillRunning},
	{"containerd restarted", restartDaemon("containerd"), expectStillRunning},
}

func injectFaults(ctx context.Context, w *world) error {
	for i, f := range faults {
		if err := runFault(ctx, w, f, fmt.Sprintf("soak-fault-%d", i)); err != nil {
			return fmt.Errorf("fault %q: %w", f.name, err)
		}
	}
	return nil
}

func runFault(ctx context.Context, w *world, f fault, name string) error {
	before, err := takeSnapshot(w.engine)
	if err != nil {
		return err
	}
	defer docker(context.Background(), "rm", "-f", name) //nolint:errcheck // checked below
	if err := w.start(ctx, name); err != nil {
		return err
	}
	id, err := docker(ctx, "inspect", "-f", "{{.Id}}", name)
	if err != nil {
		return err
	}
	if err := f.inject(ctx, w, id); err != nil {
		return err
	}
	outcome, err := f.expect(ctx, w, name)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, "rm", "-f", name); err != nil {
		return err
	}
	if err := waitClean(ctx, w, before.processesOnly()); err != nil {
		return err
	}
	fmt.Printf("fault %-38s %s; removed, nothing left behind\n", f.name+":", outcome)
	return nil
}

// waitClean waits up to 30 s for the processes, namespaces, mounts and state directories to be
// back to what they were.
func waitClean(ctx context.Context, w *world, want snapshot) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := takeSnapshot(w.engine)
		if err != nil {
			return err
		}
		left := s.processesOnly().leftoversSince(want, 0)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("left behind: %v", left)
		}
		time.Sleep(time.Second)
	}
}

func expectExited(ctx context.Context, _ *world, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	code, err := docker(ctx, "wait", name)
	if err != nil {
		return "", fmt.Errorf("the container did not exit within 60 s: %w", err)
	}
	return "the container exited with code " + code, nil
}

func expectStillRunning(ctx context.Context, w *world, name string) (string, error) {
	// dockerd reconnects to containerd (and restores its containers) in the background.
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		if err = w.use(ctx, name, w.gateway); err == nil {
			return "the container kept running (exec, volume and network work)", nil
		}
	}
	return "", fmt.Errorf("the container is not usable 60 s after the restart: %w", err)
}

func killProcess(find func(id string) (int, error)) func(context.Context, *world, string) error {
	return func(_ context.Context, _ *world, id string) error {
		pid, err := find(id)
		if err != nil {
			return err
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	}
}

// vmProcessOf finds the container's QEMU: the runtime names it kata-<sandbox id>.
func vmProcessOf(id string) (int, error) {
	return findProcess("qemu", func(args []string) bool { return hasArg(args, "kata-"+id) })
}

// shimProcessOf finds the container's shim: containerd starts it with -id <container id>.
func shimProcessOf(id string) (int, error) {
	return findProcess("shim", func(args []string) bool { return hasArg(args, id) })
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want || strings.Contains(a, "="+want) || strings.Contains(a, ","+want) {
			return true
		}
	}
	return false
}

func findProcess(kind string, match func([]string) bool) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || processKind(cmdline) != kind {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process of the container", kind)
}

func restartDaemon(daemon string) func(context.Context, *world, string) error {
	return func(_ context.Context, w *world, _ string) error { return w.engine.restart(daemon) }
}

// restartDockerdLiveRestore turns live-restore on in the running dockerd (the option in force at
// shutdown decides whether containers are stopped), restarts dockerd (the container must
// survive), and turns it off again.
func restartDockerdLiveRestore(ctx context.Context, w *world, _ string) error {
	if err := w.reloadLiveRestore(ctx, true); err != nil {
		return err
	}
	if err := w.engine.restart("dockerd"); err != nil {
		return errors.Join(err, w.reloadLiveRestore(ctx, false))
	}
	return w.reloadLiveRestore(ctx, false)
}

// reloadLiveRestore sets live-restore in daemon.json and has dockerd reload it (SIGHUP: the
// option is reloadable), waiting until `docker info` reports it.
func (w *world) reloadLiveRestore(ctx context.Context, on bool) error {
	if err := setLiveRestore(&on); err != nil {
		return err
	}
	pid, err := readPid(w.engine.dockerdPidfile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return err
	}
	want := fmt.Sprint(on)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err := docker(ctx, "info", "-f", "{{.LiveRestoreEnabled}}"); err == nil && got == want {
			if on {
				return nil
			}
			// A reload leaves an option it does not find as it was: "false" was written to turn
			// it off; now the file can be as it was before the run.
			return setLiveRestore(nil)
		}
	}
	return fmt.Errorf("dockerd did not reload live-restore=%s within 10 s", want)
}

// setLiveRestore writes live-restore into the engine's daemon.json, or removes it when on is nil,
// keeping every other key (the runtime entry).
func setLiveRestore(on *bool) error {
	path := os.Getenv("KATA_TEST_DAEMON_JSON")
	if path == "" {
		return errors.New("KATA_TEST_DAEMON_JSON is not set: source the env file of hack/engine.sh up")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cfg := map[string]json.RawMessage{}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if on != nil {
		cfg["live-restore"] = json.RawMessage(fmt.Sprint(*on))
	} else {
		delete(cfg, "live-restore")
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, append(out, '\n'), 0o644)
}
