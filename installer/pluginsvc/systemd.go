package pluginsvc

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// DefaultUnitDir is where the installer writes the unit: the administrator's directory, which
// takes precedence over a packaged unit of the same name.
const DefaultUnitDir = "/etc/systemd/system"

// UnitName is the systemd unit of the service called name: kata-plugins.service for the default
// driver (the packaged unit's name), kata-plugins-<name>.service otherwise.
func UnitName(name string) string {
	if name == DefaultName {
		return "kata-plugins.service"
	}
	return "kata-plugins-" + name + ".service"
}

// RenderUnit is the unit template (configs/kata-plugins.service) with its ExecStart running s.
// The template's other lines (ordering before docker.service, restart policy, mount namespace)
// are kept as they are.
func RenderUnit(template []byte, s Spec) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	lines := bytes.Split(template, []byte("\n"))
	found := 0
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("ExecStart=")) {
			lines[i] = []byte("ExecStart=" + strings.Join(s.Args(), " "))
			found++
		}
	}
	if found != 1 {
		return nil, fmt.Errorf("the unit template has %d ExecStart lines, want 1", found)
	}
	return bytes.Join(lines, []byte("\n")), nil
}

// Systemctl runs systemctl with args; tests replace it.
type Systemctl func(ctx context.Context, args ...string) ([]byte, error)

// RunSystemctl runs the host's systemctl.
func RunSystemctl(ctx context.Context, args ...string) ([]byte, error) {
	path, err := lookSystemctl()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func lookSystemctl() (string, error) { return exec.LookPath("systemctl") }

// Enable makes systemd load the unit file just written, then enables and (re)starts the unit.
func (sc Systemctl) Enable(ctx context.Context, unit string, restart bool) error {
	if _, err := sc(ctx, "daemon-reload"); err != nil {
		return err
	}
	if _, err := sc(ctx, "enable", unit); err != nil {
		return err
	}
	verb := "start"
	if restart {
		verb = "restart"
	}
	_, err := sc(ctx, verb, unit)
	return err
}

// Disable stops and disables the unit. A unit systemd does not know is already both.
func (sc Systemctl) Disable(ctx context.Context, unit string) error {
	out, err := sc(ctx, "disable", "--now", unit)
	if err != nil && !notLoaded(out) {
		return err
	}
	return nil
}

// Reload makes systemd forget a removed unit file.
func (sc Systemctl) Reload(ctx context.Context) error {
	_, err := sc(ctx, "daemon-reload")
	return err
}

// MainPID is the unit's main process (0 when it is not running).
func (sc Systemctl) MainPID(ctx context.Context, unit string) (int, error) {
	out, err := sc(ctx, "show", "--property", "MainPID", "--value", unit)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &pid); err != nil {
		return 0, fmt.Errorf("systemctl show %s: MainPID %q: %w", unit, strings.TrimSpace(string(out)), err)
	}
	return pid, nil
}

func notLoaded(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "not loaded") || strings.Contains(s, "does not exist") || strings.Contains(s, "not found")
}
