package registration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
)

// State is what kata-deploy changed in one daemon.json; the install manifest stores it (in its
// own format: see package manifest).
type State struct {
	// Path is the daemon.json edited (as the daemon names it; symlinks are followed on write).
	Path string
	// Created: the file did not exist before the first change; uninstall deletes it when the
	// reverted content is empty.
	Created bool
	// Backup is a copy of the file made before the first change; uninstall removes it.
	Backup string
	// Changes are in effect in the file, oldest first.
	Changes []daemonjson.Change
	// Pending is a write that was journaled and may or may not have reached the disk.
	Pending *Pending
}

// Pending journals a write before it happens: the file's checksum before and after, and the
// changes the write makes.
type Pending struct {
	BeforeSHA256 string
	AfterSHA256  string
	Changes      []daemonjson.Change
}

// Registered reports whether the state holds changes that uninstall must revert.
func (s *State) Registered() bool {
	return s != nil && (len(s.Changes) > 0 || s.Pending != nil)
}

// Reconcile settles a journaled write after a crash: if the file still has the bytes it had
// before the write, the write never happened and its changes are dropped; otherwise they are
// taken as made (daemonjson.Revert only undoes a change whose value is still the one written, so
// recording a change that someone else undid is harmless).
func Reconcile(st *State) error {
	if st.Pending == nil {
		return nil
	}
	data, _, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		return fmt.Errorf("settling an interrupted write of %s: %w", st.Path, err)
	}
	if sum(data) != st.Pending.BeforeSHA256 {
		st.Changes = append(st.Changes, st.Pending.Changes...)
	} else if len(st.Changes) == 0 {
		st.Created = false
	}
	st.Pending = nil
	return nil
}

// sum is the hex SHA-256 of data; a missing file (nil) hashes like an empty one.
func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
