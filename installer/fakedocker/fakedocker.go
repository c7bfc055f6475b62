// Package fakedocker is a stand-in dockerd for the installer's tests. It models what matters
// about the real one: on Reload it re-reads daemon.json and replaces its runtimes only when the
// file has the "runtimes" key, and its default runtime only when "default-runtime" is non-empty;
// a file it cannot load makes the reload fail (the real daemon then emits no reload event).
// Its loaded state lives in a file, so that it survives a test process killed mid-install.
package fakedocker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
)

// Daemon is a fake dockerd reading ConfigPath, keeping its state in StateDir.
type Daemon struct {
	ConfigPath string
	StateDir   string
	// ValidateErr, when set, is what Validate returns for any content containing ValidateReject.
	ValidateErr    error
	ValidateReject string
	// FailReload makes every reload fail, as if dockerd refused the file.
	FailReload bool
	// HideRuntime makes a reload succeed without loading this runtime name (a daemon that
	// silently ignores an entry).
	HideRuntime string
	Containers  []dockerapi.Container
	Images      []string
	// RunOutput is what a container prints (its stdout).
	RunOutput string
	// Volumes are the volumes of each volume driver.
	Volumes map[string][]string
	// Networks are the networks of each network driver.
	Networks map[string][]string
}

// Loaded is the daemon's in-memory configuration, persisted in StateDir.
type Loaded struct {
	Runtimes map[string]json.RawMessage `json:"runtimes"`
	Default  string                     `json:"default"`
	Reloads  int                        `json:"reloads"`
}

// State returns what the daemon has loaded.
func (d *Daemon) State() Loaded {
	var l Loaded
	data, err := os.ReadFile(filepath.Join(d.StateDir, "loaded.json"))
	if err == nil {
		_ = json.Unmarshal(data, &l)
	}
	if l.Default == "" {
		l.Default = "runc"
	}
	return l
}

func (d *Daemon) save(l Loaded) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.StateDir, "loaded.json"), data, 0o644)
}

// Validate checks that data is a JSON object (and applies ValidateErr).
func (d *Daemon) Validate(_ context.Context, data []byte) error {
	if d.ValidateErr != nil && bytes.Contains(data, []byte(d.ValidateReject)) {
		return d.ValidateErr
	}
	_, err := parse(data)
	return err
}

// Reload applies the file with dockerd's reload rules.
func (d *Daemon) Reload(_ context.Context) error {
	if d.FailReload {
		return errors.New("fake dockerd: reload refused")
	}
	data, err := os.ReadFile(d.ConfigPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	top, err := parse(data)
	if err != nil {
		return fmt.Errorf("fake dockerd: reload refused: %w", err)
	}
	l := d.State()
	l.Reloads++
	if raw, ok := top["runtimes"]; ok && string(raw) != "null" {
		var rts map[string]json.RawMessage
		if err := json.Unmarshal(raw, &rts); err != nil {
			return fmt.Errorf("fake dockerd: runtimes: %w", err)
		}
		delete(rts, d.HideRuntime)
		l.Runtimes = rts
	}
	if raw, ok := top["default-runtime"]; ok {
		var def string
		if json.Unmarshal(raw, &def) == nil && def != "" {
			if _, known := l.Runtimes[def]; !known && def != "runc" {
				return fmt.Errorf("fake dockerd: default-runtime %q is not a runtime", def)
			}
			l.Default = def
		}
	}
	if _, known := l.Runtimes[l.Default]; !known && l.Default != "runc" {
		return fmt.Errorf("fake dockerd: default-runtime %q would be removed", l.Default)
	}
	return d.save(l)
}

// Runtimes lists runc and the loaded runtimes, sorted, and the default.
func (d *Daemon) Runtimes(context.Context) ([]string, string, error) {
	l := d.State()
	names := []string{"runc"}
	for n := range l.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, l.Default, nil
}

// ContainersUsing returns the containers set in Containers.
func (d *Daemon) ContainersUsing(context.Context, string) ([]dockerapi.Container, error) {
	return d.Containers, nil
}

// HasImage reports whether ref is in Images.
func (d *Daemon) HasImage(_ context.Context, ref string) (bool, error) {
	return slices.Contains(d.Images, ref), nil
}

// Run succeeds, printing RunOutput, when the runtime is loaded.
func (d *Daemon) Run(_ context.Context, o dockerapi.RunOptions) (dockerapi.RunResult, error) {
	if _, ok := d.State().Runtimes[o.Runtime]; !ok {
		return dockerapi.RunResult{}, fmt.Errorf("fake dockerd: unknown or invalid runtime name: %s", o.Runtime)
	}
	return dockerapi.RunResult{Stdout: d.RunOutput}, nil
}

// parse reads a daemon.json as dockerd does: empty is {}, a UTF-8 BOM is skipped.
func parse(data []byte) (map[string]json.RawMessage, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	top := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(data)) == 0 {
		return top, nil
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	return top, nil
}

// Close does nothing; it completes the installer's Docker interface.
func (d *Daemon) Close() error { return nil }

// NetworksOfDriver lists Networks[driver].
func (d *Daemon) NetworksOfDriver(_ context.Context, driver string) ([]string, error) {
	return slices.Clone(d.Networks[driver]), nil
}

// VolumesOfDriver lists Volumes[driver].
func (d *Daemon) VolumesOfDriver(_ context.Context, driver string) ([]string, error) {
	return slices.Clone(d.Volumes[driver]), nil
}
