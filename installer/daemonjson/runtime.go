package daemonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
)

// StockRuntime is the runtime built into Docker. Its name is reserved: Docker
// refuses a "runtimes" entry called runc.
const StockRuntime = "runc"

// Runtime is one entry of daemon.json's "runtimes" object, with Docker's
// field names. Set either RuntimeType (a containerd shim v2: a name such as
// io.containerd.kata.v2 or an absolute path to the shim binary) with
// optional Options, or Path (a runc-compatible binary) with optional
// RuntimeArgs; never both.
type Runtime struct {
	Path        string         `json:"path,omitempty"`
	RuntimeArgs []string       `json:"runtimeArgs,omitempty"`
	RuntimeType string         `json:"runtimeType,omitempty"`
	Options     map[string]any `json:"options,omitempty"`
}

// nameRE is the runtime name syntax accepted here (a name becomes part of
// containerd and file-system identifiers, so keep it tame).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidateName checks a runtime name that is to be written to daemon.json.
func ValidateName(name string) error {
	switch {
	case name == StockRuntime:
		return fmt.Errorf("%w: the name %q is reserved by Docker for its built-in runtime; choose another name", ErrInvalidRuntime, name)
	case len(name) > 255 || !nameRE.MatchString(name):
		return fmt.Errorf("%w: name %q must start with a letter or digit and contain only letters, digits, '_', '.' and '-'", ErrInvalidRuntime, name)
	}
	return nil
}

// Validate checks the entry against the rules dockerd applies when it loads
// runtimes, so that a written file never makes the daemon refuse to start.
func (r Runtime) Validate() error {
	switch {
	case r.Path == "" && r.RuntimeType == "":
		return fmt.Errorf("%w: set runtimeType (a shim v2) or path (a runc-compatible binary)", ErrInvalidRuntime)
	case r.Path != "" && r.RuntimeType != "":
		return fmt.Errorf("%w: path %q and runtimeType %q are both set; Docker accepts only one of them", ErrInvalidRuntime, r.Path, r.RuntimeType)
	case r.Path != "" && len(r.Options) > 0:
		return fmt.Errorf("%w: options only work with runtimeType, not with path %q", ErrInvalidRuntime, r.Path)
	case r.RuntimeType != "" && len(r.RuntimeArgs) > 0:
		return fmt.Errorf("%w: runtimeArgs only work with path, not with runtimeType %q", ErrInvalidRuntime, r.RuntimeType)
	}
	if err := checkBinary("runtimeType", r.RuntimeType); err != nil {
		return err
	}
	return checkBinary("path", r.Path)
}

// checkBinary accepts a bare name (looked up by Docker or containerd) or a
// clean absolute path; a relative path would depend on dockerd's cwd.
func checkBinary(field, value string) error {
	if value == "" || !strings.ContainsRune(value, '/') {
		return nil
	}
	if !filepath.IsAbs(value) || filepath.Clean(value) != value {
		return fmt.Errorf("%w: %s %q must be a bare name or a clean absolute path", ErrInvalidRuntime, field, value)
	}
	return nil
}

// marshalCompact encodes v without HTML escaping ('&', '<', '>' stay as
// written), as one line.
func marshalCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// semanticEqual reports whether two JSON texts hold the same value: same
// members regardless of order and layout, numbers compared as written.
// Absent (nil) equals only absent.
func semanticEqual(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	va, errA := decodeAny(a)
	vb, errB := decodeAny(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decodeAny(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}
