package registration

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/textdiff"
)

// Edit is a planned change of daemon.json: the bytes now and after, and the changes between.
type Edit struct {
	Path    string
	Info    daemonjson.FileInfo
	Old     []byte
	New     []byte
	Changes []daemonjson.Change // empty: the file already says what is wanted
}

// Entry is the daemon.json "runtimes" entry of a shim v2 runtime with its configuration file.
func Entry(shimPath, configPath string) daemonjson.Runtime {
	return daemonjson.Runtime{RuntimeType: shimPath, Options: map[string]any{"ConfigPath": configPath}}
}

// PlanRegister reads daemon.json at path and computes the edit that registers rt as name (and
// makes it the default runtime when setDefault). Nothing is written. A file that is not valid
// JSON is an error with its line and column; an existing different entry of the same name is an
// error wrapping daemonjson.ErrRuntimeConflict unless force.
func PlanRegister(path, name string, rt daemonjson.Runtime, setDefault, force bool) (*Edit, error) {
	data, info, err := daemonjson.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	changes, err := doc.SetRuntime(name, rt, force)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if setDefault {
		c, err := doc.SetDefaultRuntime(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		changes = append(changes, c...)
	}
	e := &Edit{Path: path, Info: info, Old: data, New: data, Changes: changes}
	if len(changes) > 0 {
		e.New = doc.Bytes()
	}
	return e, nil
}

// Diff is the edit as a unified diff ("" when nothing changes).
func (e *Edit) Diff() string {
	return textdiff.Unified("a"+e.Path, "b"+e.Path, string(e.Old), string(e.New))
}

// Stanza is the JSON to merge into a daemon.json by hand where kata-deploy must not write it
// (Docker Desktop, a read-only Nix store path).
func Stanza(name string, rt daemonjson.Runtime, setDefault bool) string {
	v := map[string]any{"runtimes": map[string]any{name: rt}}
	if setDefault {
		v["default-runtime"] = name
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a map of strings cannot fail to encode
	return buf.String()
}
