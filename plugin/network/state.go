package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/renameio/v2"
)

const stateVersion = 1

// netRecord is one network as persisted.
type netRecord struct {
	ID      string `json:"id"`
	Bridge  string `json:"bridge"`
	Gateway string `json:"gateway"` // CIDR: the bridge's address
	Subnet  string `json:"subnet"`
	MTU     int    `json:"mtu,omitempty"`
}

// endpointRecord is one endpoint as persisted.
type endpointRecord struct {
	ID        string `json:"id"`
	NetworkID string `json:"networkID"`
	Address   string `json:"address"` // CIDR
	MAC       string `json:"mac"`
	HostVeth  string `json:"hostVeth"`
	PeerVeth  string `json:"peerVeth"` // moved into the container at Join
}

type state struct {
	Version   int                        `json:"version"`
	Networks  map[string]*netRecord      `json:"networks"`
	Endpoints map[string]*endpointRecord `json:"endpoints"`
}

func loadState(path string) (*state, error) {
	st := &state{Version: stateVersion, Networks: map[string]*netRecord{}, Endpoints: map[string]*endpointRecord{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("reading %s: %w (remove the networks with docker network rm, then move the file aside)", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s has version %d, this driver reads %d: use the matching kata-plugins", path, st.Version, stateVersion)
	}
	if st.Networks == nil {
		st.Networks = map[string]*netRecord{}
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]*endpointRecord{}
	}
	return st, nil
}

// save replaces the file atomically: a crash leaves the old state or the new one.
func (st *state) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the network state: %w", err)
	}
	return nil
}
