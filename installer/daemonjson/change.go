package daemonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Change records one edit so that uninstall can undo exactly its own edits.
// Key is a JSON Pointer (RFC 6901): "" for the top level, "/runtimes",
// "/runtimes/<name>", "/default-runtime". Before and After are the exact
// bytes of the value; nil means absent.
//
// The install manifest stores changes in its own format (package manifest),
// keeping their bytes exactly.
type Change struct {
	Key    string
	Before json.RawMessage
	After  json.RawMessage
}

// Kept is a change Revert left alone because the value was changed after
// it was made.
type Kept struct {
	Change  Change
	Current json.RawMessage // the value found instead of Change.After; nil = absent
}

// RevertResult says what Revert did.
type RevertResult struct {
	Reverted []Change // changes undone, in the order they were undone
	Kept     []Kept   // changes left because someone edited the value since

	// Unload, when not nil, is what to write first, followed by SIGHUP and
	// a wait for dockerd's reload event, before writing Document.Bytes().
	// See the package documentation ("Unloading") for why.
	Unload []byte
}

// Revert undoes changes (as returned by the setters, oldest first) in
// reverse order. A change is undone only if the value still equals its
// After (same JSON value, layout ignored); a value edited since is left as
// is and reported in Kept. A value already back to Before counts as undone
// and is not reported; so is "default-runtime": "runc" where the key was
// absent, null or "" before (the Unload step writes it, and it means the
// same to Docker), which makes a Revert interrupted between the two writes
// safe to run again. doc is modified in place; on error it is unchanged.
func Revert(doc *Document, changes []Change) (RevertResult, error) {
	var res RevertResult
	saved := bytes.Clone(doc.text)
	unloadRuntimes, unloadDefault := false, false
	for i := len(changes) - 1; i >= 0; i-- {
		c := changes[i]
		path, err := parsePointer(c.Key)
		if err == nil {
			err = checkValues(c)
		}
		if err != nil {
			doc.text = saved
			return RevertResult{}, err
		}
		undone, kept, err := doc.revertOne(path, c)
		if err != nil {
			doc.text = saved
			return RevertResult{}, fmt.Errorf("revert %s in daemon.json: %w", c.Key, err)
		}
		if kept != nil {
			res.Kept = append(res.Kept, *kept)
			continue
		}
		if undone {
			res.Reverted = append(res.Reverted, c)
		}
		if len(path) > 0 && path[0] == keyRuntimes {
			unloadRuntimes = true
		}
		if len(path) == 1 && path[0] == keyDefaultRuntime {
			unloadDefault = true
		}
	}
	unload, err := doc.unloadBytes(unloadRuntimes, unloadDefault)
	if err != nil {
		doc.text = saved
		return RevertResult{}, err
	}
	res.Unload = unload
	return res, nil
}

// revertOne undoes one change if the value is still its After.
func (d *Document) revertOne(path []string, c Change) (undone bool, kept *Kept, err error) {
	loc, err := d.lookup(path)
	if err != nil {
		return false, nil, err
	}
	var cur json.RawMessage
	if loc.found {
		cur = bytes.Clone(d.raw(loc.val))
	}
	switch {
	case semanticEqual(cur, c.After):
	case semanticEqual(cur, c.Before):
		return false, nil, nil // already undone
	case len(path) == 1 && path[0] == keyDefaultRuntime && semanticEqual(cur, []byte(`"runc"`)) && meansStock(c.Before):
	default:
		return false, &Kept{Change: c, Current: cur}, nil
	}
	if c.Before == nil {
		return true, nil, d.removeValue(path)
	}
	if len(path) > 0 {
		if _, err := d.ensureObject(path[:len(path)-1]); err != nil {
			return false, nil, err
		}
	}
	_, err = d.setValue(path, c.Before, false)
	return true, nil, err
}

// meansStock reports whether a default-runtime value makes Docker use runc.
func meansStock(raw []byte) bool {
	return raw == nil || semanticEqual(raw, []byte("null")) || semanticEqual(raw, []byte(`""`)) ||
		semanticEqual(raw, []byte(`"runc"`))
}

// unloadBytes returns the document to write before the final one when the
// final one lacks what dockerd needs to see on SIGHUP to drop what we had
// registered, or nil when the final document is enough.
func (d *Document) unloadBytes(runtimes, defaultRuntime bool) ([]byte, error) {
	u := &Document{enc: d.enc, text: bytes.Clone(d.text), style: d.style}
	if runtimes {
		if loc, err := u.lookup([]string{keyRuntimes}); err != nil {
			return nil, err
		} else if !loc.found || u.text[loc.val.start] == 'n' {
			if _, err := u.ensureObject([]string{keyRuntimes}); err != nil {
				return nil, err
			}
		}
	}
	if defaultRuntime && u.DefaultRuntime() == "" {
		if _, err := u.ResetDefaultRuntime(); err != nil {
			return nil, err
		}
	}
	if bytes.Equal(u.text, d.text) {
		return nil, nil
	}
	return u.Bytes(), nil
}

// checkValues refuses a change whose values are not single JSON values: the
// bytes are spliced into the file verbatim.
func checkValues(c Change) error {
	for _, raw := range []json.RawMessage{c.Before, c.After} {
		if raw != nil && !json.Valid(raw) {
			return fmt.Errorf("change %q holds %q, which is not a JSON value; the manifest is corrupt", c.Key, raw)
		}
	}
	return nil
}

func parsePointer(ptr string) ([]string, error) {
	if ptr != "" && !strings.HasPrefix(ptr, "/") {
		return nil, fmt.Errorf("change key %q is not a JSON Pointer (it must be empty or start with '/'); the manifest is corrupt", ptr)
	}
	return splitPointer(ptr), nil
}
