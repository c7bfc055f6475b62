package daemonjson

import (
	"fmt"
)

// SetRuntime adds runtime name to "runtimes", creating the key (and the
// top-level object) if needed. An identical existing entry (same value,
// whatever its layout) changes nothing and returns no Change. A different
// existing entry is an error wrapping ErrRuntimeConflict unless force is
// set, in which case it is replaced. The returned changes, in order, are
// what Revert needs to undo exactly this call.
func (d *Document) SetRuntime(name string, rt Runtime, force bool) ([]Change, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := rt.Validate(); err != nil {
		return nil, fmt.Errorf("runtime %q: %w", name, err)
	}
	raw, err := marshalCompact(rt)
	if err != nil {
		return nil, err
	}
	if cur, ok := d.Runtime(name); ok {
		if semanticEqual(cur, raw) {
			return nil, nil
		}
		if !force {
			return nil, fmt.Errorf("%w: runtimes.%s is %s but kata-deploy would write %s; rename or remove the existing entry, or replace it on purpose (force)",
				ErrRuntimeConflict, name, compact(cur), raw)
		}
	}
	return d.transaction(func() ([]Change, error) {
		changes, err := d.ensureObject([]string{keyRuntimes})
		if err != nil {
			return nil, err
		}
		c, err := d.record([]string{keyRuntimes, name}, raw)
		return append(changes, c), err
	})
}

// RemoveRuntime deletes runtime name from "runtimes". Removing the last one
// leaves "runtimes": {} in place: dockerd reloads runtimes on SIGHUP only when
// the key is present, so deleting the key would leave the runtime loaded.
// Removing the runtime that "default-runtime" names is refused (dockerd
// would refuse the file); reset the default first.
func (d *Document) RemoveRuntime(name string) ([]Change, error) {
	if d.DefaultRuntime() == name && name != "" {
		return nil, fmt.Errorf("cannot remove runtime %q from daemon.json: %w; set default-runtime to another runtime (e.g. %q) first",
			name, ErrRuntimeInUse, StockRuntime)
	}
	path := []string{keyRuntimes, name}
	before, ok := d.Runtime(name)
	if !ok {
		return nil, nil
	}
	return d.transaction(func() ([]Change, error) {
		if err := d.removeValue(path); err != nil {
			return nil, err
		}
		return []Change{{Key: pointer(path), Before: before}}, nil
	})
}

// SetDefaultRuntime sets "default-runtime" to name, which must be runc or a
// runtime present in "runtimes" (dockerd refuses an unknown default).
func (d *Document) SetDefaultRuntime(name string) ([]Change, error) {
	if name != StockRuntime {
		if err := ValidateName(name); err != nil {
			return nil, err
		}
		if _, ok := d.Runtime(name); !ok {
			return nil, fmt.Errorf("%w: default-runtime %q is not in \"runtimes\"; add the runtime first", ErrInvalidRuntime, name)
		}
	}
	if loc, err := d.lookup([]string{keyDefaultRuntime}); err == nil && loc.found && d.DefaultRuntime() == name {
		return nil, nil
	}
	raw, err := marshalCompact(name)
	if err != nil {
		return nil, err
	}
	return d.transaction(func() ([]Change, error) {
		changes, err := d.ensureObject(nil)
		if err != nil {
			return nil, err
		}
		c, err := d.record([]string{keyDefaultRuntime}, raw)
		return append(changes, c), err
	})
}

// ResetDefaultRuntime writes "default-runtime": "runc", adding the key when
// it is absent; it changes nothing if the file already says "runc".
// Deleting the key would not do: dockerd reloads default-runtime on SIGHUP
// only when it is non-empty.
func (d *Document) ResetDefaultRuntime() ([]Change, error) {
	return d.SetDefaultRuntime(StockRuntime)
}
