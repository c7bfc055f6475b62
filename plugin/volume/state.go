package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/google/renameio/v2"
)

const stateVersion = 1

// record is one volume as persisted.
type record struct {
	Spec
	CreatedAt string `json:"createdAt"`
	// Mounts is the set of Docker's mount IDs that have the volume mounted: one per container
	// mount, not per container, and re-sent by Docker after its own restart.
	Mounts []string `json:"mounts,omitempty"`
}

// state is the driver's file: every volume, and the boot it was written in (mounts do not
// survive a reboot of the host).
type state struct {
	Version int                `json:"version"`
	BootID  string             `json:"bootID"`
	Volumes map[string]*record `json:"volumes"`
}

func loadState(path string) (*state, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Version: stateVersion, Volumes: map[string]*record{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w (move it aside to start over; the volumes' images stay in place)", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s has version %d, this driver reads %d: use the matching kata-plugins", path, st.Version, stateVersion)
	}
	if st.Volumes == nil {
		st.Volumes = map[string]*record{}
	}
	return &st, nil
}

// save replaces the file atomically: a crash leaves the old state or the new one.
func (st *state) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the volume state: %w", err)
	}
	return nil
}

func (r *record) addMount(id string) {
	if !slices.Contains(r.Mounts, id) {
		r.Mounts = append(r.Mounts, id)
	}
}

func (r *record) removeMount(id string) bool {
	i := slices.Index(r.Mounts, id)
	if i < 0 {
		return false
	}
	r.Mounts = slices.Delete(r.Mounts, i, i+1)
	return true
}
