package registration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
)

// ErrValidateUnsupported is what Daemon.Validate returns when the daemon binary has no way to
// check a configuration (dockerd older than 23.0 has no --validate).
var ErrValidateUnsupported = errors.New("dockerd cannot validate a configuration file (no --validate)")

// Daemon is the running dockerd, as registration needs it.
type Daemon interface {
	// Validate checks data as a daemon.json together with the daemon's command line.
	Validate(ctx context.Context, data []byte) error
	// Reload makes the daemon re-read daemon.json and returns once it reports that it has.
	Reload(ctx context.Context) error
	// Runtimes returns the runtimes the daemon has loaded and its default runtime.
	Runtimes(ctx context.Context) (names []string, defaultRuntime string, err error)
}

// Checkpoints passed to Registrar.Checkpoint: each follows a durable step.
const (
	CheckpointJournaled     = "daemon-json-journaled"      // the write is journaled, the file not yet written
	CheckpointWritten       = "daemon-json-written"        // the new file is on disk, not yet recorded
	CheckpointUnloadWritten = "daemon-json-unload-written" // uninstall: the unload document is on disk
	CheckpointUnloaded      = "daemon-json-unloaded"       // uninstall: dockerd reloaded it
	CheckpointReverted      = "daemon-json-reverted"       // uninstall: the final file is on disk
)

// Registrar performs registrations against one daemon.
type Registrar struct {
	// Daemon is nil when Docker is not running: the file is edited and nothing is reloaded.
	Daemon Daemon
	// Save persists the state (the install manifest); it is called before and after every write.
	Save func(*State) error
	// Checkpoint, if set, is called after each durable step with one of the Checkpoint* names.
	Checkpoint func(string)
	// Warn reports something the user should know that does not stop the operation.
	Warn func(string)
	// Now is the clock for backup names (time.Now when nil).
	Now func() time.Time
}

// Register applies e (from PlanRegister) to the file and the running daemon, recording it in st.
// With nothing to change it only makes sure the daemon has the runtime loaded, reloading it if
// not (a previous run may have been killed between the write and the reload). On a failure after
// the write the changes are reverted and the daemon reloaded; the error says so.
func (r *Registrar) Register(ctx context.Context, st *State, e *Edit, name string, setDefault bool) error {
	st.Path = e.Path
	if len(e.Changes) == 0 {
		return r.ensureLoaded(ctx, name, setDefault)
	}
	if err := r.validate(ctx, e); err != nil {
		return err
	}
	if err := r.backup(st, e); err != nil {
		return err
	}
	if !e.Info.Exists {
		st.Created = true
	}
	st.Pending = &Pending{BeforeSHA256: sum(e.Old), AfterSHA256: sum(e.New), Changes: e.Changes}
	if err := r.save(st); err != nil {
		return err
	}
	r.checkpoint(CheckpointJournaled)
	if err := writeIfUnchanged(e); err != nil {
		return err
	}
	r.checkpoint(CheckpointWritten)
	st.Changes = append(st.Changes, e.Changes...)
	st.Pending = nil
	if err := r.save(st); err != nil {
		return err
	}
	if err := r.reloadAndVerify(ctx, name, true, setDefault); err != nil {
		switch rerr := r.rollback(ctx, st, e.Changes); {
		case errors.Is(rerr, errReload):
			return fmt.Errorf("%w; daemon.json was restored, but Docker did not confirm reloading it either (%v): check the daemon's log", err, rerr)
		case rerr != nil:
			return fmt.Errorf("%w; rolling back failed too: %v (run `kata-deploy uninstall` to revert the recorded changes)", err, rerr)
		}
		return fmt.Errorf("%w; daemon.json was restored and Docker reloaded", err)
	}
	return nil
}

// UnregisterResult says what Unregister did.
type UnregisterResult struct {
	Reverted []daemonjson.Change
	Kept     []daemonjson.Kept // changes left because the user edited the value since
	Deleted  bool              // the file was created by install and is gone again
}

// Unregister reverts every change recorded in st, reloads the daemon and checks that it no
// longer lists the runtime. Values the user changed since are kept and reported.
func (r *Registrar) Unregister(ctx context.Context, st *State, name string) (UnregisterResult, error) {
	var res UnregisterResult
	if err := Reconcile(st); err != nil {
		return res, err
	}
	if len(st.Changes) == 0 {
		return res, r.finish(st)
	}
	data, info, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		return res, err
	}
	if !info.Exists {
		r.warn(fmt.Sprintf("%s no longer exists: nothing to revert there", st.Path))
		st.Changes = nil
		return res, r.finish(st)
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		return res, fmt.Errorf("%s: %w; then run uninstall again", st.Path, err)
	}
	rr, err := daemonjson.Revert(doc, st.Changes)
	if err != nil {
		return res, err
	}
	res.Reverted, res.Kept = rr.Reverted, rr.Kept
	for _, k := range rr.Kept {
		if holdsKept(k, rr.Kept) {
			continue // "runtimes" stays because the entry in it stays: one warning is enough
		}
		r.warn(fmt.Sprintf("%s: %s was changed after install (now %s); left as is", st.Path, k.Change.Key, orAbsent(k.Current)))
	}
	deleted, err := r.writeReverted(ctx, st, data, info, doc, rr.Unload, false)
	if err != nil {
		return res, err
	}
	res.Deleted = deleted
	if err := r.verifyGone(ctx, name, rr); err != nil {
		return res, err
	}
	st.Changes = nil
	return res, r.finish(st)
}

// finish records a fully reverted state and removes the backup, which only served until then.
func (r *Registrar) finish(st *State) error {
	if st.Backup != "" {
		if err := os.Remove(st.Backup); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.warn(fmt.Sprintf("could not remove the backup %s: %v", st.Backup, err))
		}
		st.Backup = ""
	}
	st.Created = false
	return r.save(st)
}

// validate runs dockerd's own check on the new file. A validator that rejects the current file
// as well is not judging our change (a dockerd that cannot find docker-proxy, say): then it is
// skipped with a warning rather than blocking the install.
func (r *Registrar) validate(ctx context.Context, e *Edit) error {
	if r.Daemon == nil {
		return nil
	}
	err := r.Daemon.Validate(ctx, e.New)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrValidateUnsupported):
		r.warn("this dockerd has no --validate: the new daemon.json is checked by the reload instead")
		return nil
	}
	if oldErr := r.Daemon.Validate(ctx, e.Old); oldErr != nil {
		r.warn(fmt.Sprintf("dockerd --validate rejects the current daemon.json too (%v); skipping validation", oldErr))
		return nil
	}
	return fmt.Errorf("dockerd would refuse the new %s, so it was not written: %w", e.Path, err)
}

func (r *Registrar) backup(st *State, e *Edit) error {
	if !e.Info.Exists || st.Backup != "" {
		return nil
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	b, err := daemonjson.Backup(e.Path, now())
	if err != nil {
		return err
	}
	st.Backup = b
	return nil
}

// writeIfUnchanged writes e.New unless the file changed since it was planned, which would make
// the planned bytes drop someone else's edit.
func writeIfUnchanged(e *Edit) error {
	cur, _, err := daemonjson.ReadFile(e.Path)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, e.Old) {
		return fmt.Errorf("%s changed while kata-deploy was preparing its edit; nothing was written: run the command again", e.Path)
	}
	return daemonjson.WriteFileAtomic(e.Path, e.New, e.Info)
}

// ensureLoaded reloads the daemon only if it does not already list the runtime as wanted.
func (r *Registrar) ensureLoaded(ctx context.Context, name string, setDefault bool) error {
	if r.Daemon == nil {
		return nil
	}
	names, def, err := r.Daemon.Runtimes(ctx)
	if err != nil {
		return fmt.Errorf("asking Docker for its runtimes: %w", err)
	}
	if slices.Contains(names, name) && (!setDefault || def == name) {
		return nil
	}
	return r.reloadAndVerify(ctx, name, true, setDefault)
}

// reloadAndVerify reloads the daemon and checks that it lists name (or no longer does).
func (r *Registrar) reloadAndVerify(ctx context.Context, name string, present, setDefault bool) error {
	if r.Daemon == nil {
		r.warn("Docker is not running: the change takes effect when it starts")
		return nil
	}
	if err := r.Daemon.Reload(ctx); err != nil {
		return err
	}
	return r.verify(ctx, name, present, setDefault)
}

func (r *Registrar) verify(ctx context.Context, name string, present, setDefault bool) error {
	names, def, err := r.Daemon.Runtimes(ctx)
	if err != nil {
		return fmt.Errorf("asking Docker for its runtimes after the reload: %w", err)
	}
	switch has := slices.Contains(names, name); {
	case present && !has:
		return fmt.Errorf("dockerd reloaded but does not list runtime %q (it lists %v): its log says why", name, names)
	case !present && has:
		return fmt.Errorf("dockerd reloaded but still lists runtime %q", name)
	case present && setDefault && def != name:
		return fmt.Errorf("dockerd reloaded but its default runtime is %q, not %q", def, name)
	}
	return nil
}

// verifyGone checks after an uninstall that the daemon dropped what was reverted.
func (r *Registrar) verifyGone(ctx context.Context, name string, rr daemonjson.RevertResult) error {
	if r.Daemon == nil {
		return nil
	}
	removed := false
	for _, c := range rr.Reverted {
		if c.Key == "/runtimes/"+name && c.Before == nil {
			removed = true
		}
	}
	names, def, err := r.Daemon.Runtimes(ctx)
	if err != nil {
		return fmt.Errorf("asking Docker for its runtimes after the reload: %w", err)
	}
	if removed && slices.Contains(names, name) {
		return fmt.Errorf("dockerd reloaded but still lists runtime %q", name)
	}
	if def == name && !keptDefault(rr.Kept) {
		return fmt.Errorf("dockerd reloaded but its default runtime is still %q", name)
	}
	return nil
}

// holdsKept reports whether k's value contains another kept value.
func holdsKept(k daemonjson.Kept, kept []daemonjson.Kept) bool {
	for _, o := range kept {
		if strings.HasPrefix(o.Change.Key, k.Change.Key+"/") {
			return true
		}
	}
	return false
}

func keptDefault(kept []daemonjson.Kept) bool {
	for _, k := range kept {
		if k.Change.Key == "/default-runtime" {
			return true
		}
	}
	return false
}

// rollback reverts the changes just added to st (the last ones) and reloads.
func (r *Registrar) rollback(ctx context.Context, st *State, added []daemonjson.Change) error {
	data, info, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		return err
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", st.Path, err)
	}
	rr, err := daemonjson.Revert(doc, added)
	if err != nil {
		return err
	}
	// The reload that failed may or may not have taken effect: unload as on uninstall, but a
	// failing reload must not keep the original bytes from coming back.
	_, werr := r.writeReverted(ctx, st, data, info, doc, rr.Unload, true)
	if werr != nil && !errors.Is(werr, errReload) {
		return werr
	}
	st.Changes = st.Changes[:len(st.Changes)-len(added)]
	if err := r.save(st); err != nil {
		return err
	}
	return werr
}

// errReload marks a failed reload during writeReverted.
var errReload = errors.New("reload failed")

// writeReverted puts the reverted document on disk so that the daemon drops what was
// registered: through the unload document and a reload when the final file alone would not make
// dockerd forget it, else by writing the final file and reloading. A file install created and
// that is now empty is deleted. It returns whether the file was deleted.
//
// With bestEffort (a rollback), a failed reload does not stop the final write; the error is
// returned afterwards, wrapping errReload.
func (r *Registrar) writeReverted(ctx context.Context, st *State, cur []byte, info daemonjson.FileInfo, doc *daemonjson.Document, unload []byte, bestEffort bool) (bool, error) {
	final, onDisk := doc.Bytes(), cur
	var reloadErr error
	if unload != nil && r.Daemon != nil {
		if !bytes.Equal(onDisk, unload) {
			if err := daemonjson.WriteFileAtomic(st.Path, unload, info); err != nil {
				return false, err
			}
			onDisk = unload
		}
		r.checkpoint(CheckpointUnloadWritten)
		if err := r.Daemon.Reload(ctx); err != nil {
			if !bestEffort {
				return false, fmt.Errorf("%w (daemon.json holds the intermediate unload document, which is valid: run the command again)", err)
			}
			reloadErr = fmt.Errorf("%w: %w", errReload, err)
		}
		r.checkpoint(CheckpointUnloaded)
	}
	deleted := false
	switch {
	case st.Created && len(bytes.TrimSpace(final)) == 0:
		if err := os.Remove(st.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("removing %s, which install created: %w", st.Path, err)
		}
		deleted = true
	case !bytes.Equal(onDisk, final):
		if err := daemonjson.WriteFileAtomic(st.Path, final, info); err != nil {
			return false, err
		}
	}
	r.checkpoint(CheckpointReverted)
	if unload == nil && r.Daemon != nil {
		if err := r.Daemon.Reload(ctx); err != nil {
			return deleted, fmt.Errorf("%w: %w", errReload, err)
		}
	}
	return deleted, reloadErr
}

func (r *Registrar) save(st *State) error {
	if r.Save == nil {
		return nil
	}
	if err := r.Save(st); err != nil {
		return fmt.Errorf("recording the daemon.json change in the manifest: %w", err)
	}
	return nil
}

func (r *Registrar) checkpoint(name string) {
	if r.Checkpoint != nil {
		r.Checkpoint(name)
	}
}

func (r *Registrar) warn(msg string) {
	if r.Warn != nil {
		r.Warn(msg)
	}
}

func orAbsent(raw []byte) string {
	if raw == nil {
		return "absent"
	}
	return string(raw)
}
