package hostcgroup

import (
	"context"
	"fmt"
	"os"
	"time"

	systemd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

const systemdTimeout = 30 * time.Second

// systemdRunning reports whether systemd is the init system (sd_booted's test). Without it the
// systemd driver's cgroups are made on cgroupfs at the path systemd would have used.
func systemdRunning() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// startScope asks systemd for a transient scope holding pid, delegated to us as runc does, so
// that systemd neither moves the process nor rewrites the limits set through cgroupfs.
func startScope(slice, unit string, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := systemd.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd: %w", err)
	}
	defer conn.Close()
	props := []systemd.Property{
		systemd.PropDescription("kata-deploy VM " + unit),
		systemd.PropSlice(slice),
		systemd.PropPids(uint32(pid)),
		{Name: "DefaultDependencies", Value: dbus.MakeVariant(false)},
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		{Name: "MemoryAccounting", Value: dbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: dbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: dbus.MakeVariant(true)},
	}
	done := make(chan string, 1)
	if _, err := conn.StartTransientUnitContext(ctx, unit, "replace", props, done); err != nil {
		return err
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("systemd: starting %s: %s", unit, res)
		}
	case <-ctx.Done():
		return fmt.Errorf("systemd: starting %s: %w", unit, ctx.Err())
	}
	return nil
}

// stopScope stops the scope; one that is already gone (systemd collects empty scopes) is fine.
func stopScope(unit string) error {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	conn, err := systemd.NewWithContext(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd: %w", err)
	}
	defer conn.Close()
	done := make(chan string, 1)
	if _, err := conn.StopUnitContext(ctx, unit, "replace", done); err != nil {
		if derr, ok := err.(dbus.Error); ok && derr.Name == "org.freedesktop.systemd1.NoSuchUnit" {
			return nil
		}
		return fmt.Errorf("systemd: stopping %s: %w", unit, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("systemd: stopping %s: %w", unit, ctx.Err())
	}
	return nil
}
