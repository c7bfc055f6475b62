package daemonjson

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, matched with errors.Is. The returned errors wrap them
// with a message naming the key and the fix.
var (
	// ErrRuntimeConflict: daemon.json already has a different runtime under
	// the name being installed.
	ErrRuntimeConflict = errors.New("a different runtime with this name is already in daemon.json")
	// ErrInvalidRuntime: a runtime name or entry that Docker would refuse.
	ErrInvalidRuntime = errors.New("invalid runtime")
	// ErrDuplicateKey: a key this package edits appears twice in one object.
	ErrDuplicateKey = errors.New("duplicate key in daemon.json")
	// ErrEncoding: the file is not valid UTF-8 / UTF-16. Returned wrapped
	// or as a *SyntaxError that unwraps to it.
	ErrEncoding = errors.New("daemon.json is not valid UTF-8 or UTF-16")
	// ErrRuntimeInUse: removing the runtime "default-runtime" names.
	ErrRuntimeInUse = errors.New("runtime is the default-runtime")
)

// SyntaxError reports a file that is not valid JSON (or not valid text), with
// the 1-based line and column (in characters) of the problem.
type SyntaxError struct {
	Line, Column int
	Msg          string

	encoding bool // the text itself is undecodable: unwraps to ErrEncoding
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("daemon.json line %d, column %d: %s; fix the file by hand (kata-deploy never repairs it)",
		e.Line, e.Column, e.Msg)
}

// Unwrap lets errors.Is(err, ErrEncoding) match undecodable text.
func (e *SyntaxError) Unwrap() error {
	if e.encoding {
		return ErrEncoding
	}
	return nil
}

// TypeError reports a key whose value has a type Docker does not accept.
type TypeError struct {
	Key          string // JSON Pointer of the value ("" is the top level)
	Found, Want  string // JSON type names: object, array, string, number, boolean, null
	Line, Column int
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("daemon.json: %s is %s (line %d, column %d) but Docker expects %s; %s",
		describeKey(e.Key), typePhrase(e.Found), e.Line, e.Column, typePhrase(e.Want), fixFor(e.Key))
}

func describeKey(ptr string) string {
	path := splitPointer(ptr)
	switch {
	case len(path) == 0:
		return "the top level"
	case len(path) == 2 && path[0] == keyRuntimes:
		return fmt.Sprintf("runtime %q (under \"runtimes\")", path[1])
	default:
		return fmt.Sprintf("%q", strings.Join(path, "."))
	}
}

func fixFor(ptr string) string {
	path := splitPointer(ptr)
	switch {
	case len(path) == 0:
		return `the whole file must be one JSON object, e.g. {"runtimes": {}}`
	case len(path) == 1 && path[0] == keyRuntimes:
		return `make it an object mapping names to runtimes, e.g. "runtimes": {}, or remove the key`
	case len(path) == 1 && path[0] == keyDefaultRuntime:
		return `make it a runtime name in quotes, e.g. "default-runtime": "runc", or remove the key`
	case len(path) == 2 && path[0] == keyRuntimes:
		return `make it an object such as {"runtimeType": "/abs/path/to/shim"} or {"path": "/abs/path/to/runtime"}, or remove it`
	default:
		return "fix the value"
	}
}

func typePhrase(typ string) string {
	switch typ {
	case "object", "array":
		return "an " + typ
	case "null":
		return "null"
	default:
		return "a " + typ
	}
}
