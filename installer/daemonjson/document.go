package daemonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	keyRuntimes       = "runtimes"
	keyDefaultRuntime = "default-runtime"
)

// Document is a daemon.json file being edited. It keeps the file's exact
// text and changes only the bytes of the values it is asked to change.
type Document struct {
	enc   encoding
	text  []byte // UTF-8 without BOM
	style style
}

// Parse reads daemon.json content. Missing (nil), empty and whitespace-only
// content is an empty document, as for Docker. It returns a *SyntaxError for
// text that is not valid JSON, a *TypeError when a key this package edits has
// the wrong type, and an error wrapping ErrDuplicateKey or ErrEncoding.
func Parse(data []byte) (*Document, error) {
	enc, text, err := decodeText(data)
	if err != nil {
		return nil, err
	}
	d := &Document{enc: enc, text: text}
	if err := d.checkSyntax(); err != nil {
		return nil, err
	}
	if err := d.checkTypes(); err != nil {
		return nil, err
	}
	d.style, err = detectStyle(d.text, d.core())
	return d, err
}

// Bytes returns the document in the file's original encoding and BOM.
func (d *Document) Bytes() []byte { return encodeText(d.enc, d.text) }

// Runtime returns the "runtimes" entry called name, exactly as written.
func (d *Document) Runtime(name string) (json.RawMessage, bool) {
	loc, err := d.lookup([]string{keyRuntimes, name})
	if err != nil || !loc.found {
		return nil, false
	}
	return bytes.Clone(d.raw(loc.val)), true
}

// Runtimes returns the names in "runtimes", in file order.
func (d *Document) Runtimes() []string {
	loc, err := d.lookup([]string{keyRuntimes})
	if err != nil || !loc.found || d.text[loc.val.start] != '{' {
		return nil
	}
	obj, err := (scanner{b: d.text}).object(loc.val.start)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(obj.members))
	for _, m := range obj.members {
		names = append(names, m.name)
	}
	return names
}

// DefaultRuntime returns "default-runtime", or "" when it is absent or null
// (Docker then uses runc).
func (d *Document) DefaultRuntime() string {
	loc, err := d.lookup([]string{keyDefaultRuntime})
	if err != nil || !loc.found {
		return ""
	}
	var name string
	if json.Unmarshal(d.raw(loc.val), &name) != nil {
		return ""
	}
	return name
}

func (d *Document) raw(s span) []byte { return d.text[s.start:s.end] }

// core is the span of the top-level value: the text without the leading and
// trailing white space that Docker trims (bytes.TrimSpace) before parsing.
func (d *Document) core() span {
	start := len(d.text) - len(bytes.TrimLeftFunc(d.text, unicode.IsSpace))
	end := len(bytes.TrimRightFunc(d.text, unicode.IsSpace))
	return span{start, max(start, end)}
}

// checkSyntax validates the top-level value with encoding/json, the parser
// Docker uses, and converts its byte offset into a line and column.
func (d *Document) checkSyntax() error {
	core := d.core()
	if core.start == core.end {
		return nil
	}
	err := json.Unmarshal(d.raw(core), new(json.RawMessage))
	if err == nil {
		return nil
	}
	se, ok := err.(*json.SyntaxError)
	if !ok {
		return fmt.Errorf("daemon.json could not be read as JSON: %w", err)
	}
	off := core.start + int(se.Offset)
	if !strings.HasPrefix(se.Error(), "unexpected end") {
		off-- // Offset counts the offending byte itself
	}
	line, col := position(d.text, off)
	return &SyntaxError{Line: line, Column: col, Msg: "not valid JSON: " + nameChar(se.Error(), d.text, off)}
}

// nameChar fixes encoding/json's message for a non-ASCII character, which
// quotes only its first byte ('Â' for a no-break space pasted from a web
// page): it names the whole character instead.
func nameChar(msg string, text []byte, off int) string {
	const prefix = "invalid character '"
	if off < 0 || off >= len(text) || text[off] < utf8.RuneSelf || !strings.HasPrefix(msg, prefix) {
		return msg
	}
	rest, ok := strings.CutPrefix(msg[len(prefix):], string(rune(text[off]))+"'")
	if !ok {
		return msg
	}
	r, _ := utf8.DecodeRune(text[off:])
	return fmt.Sprintf("invalid character %q (U+%04X)%s", r, r, rest)
}

// checkTypes refuses documents Docker would refuse in the parts this package
// edits, and duplicate keys there (Docker's decoder keeps the last value or
// merges objects; editing one copy would silently do nothing).
func (d *Document) checkTypes() error {
	core := d.core()
	if core.start == core.end {
		return nil
	}
	if err := d.wantType(nil, core, "object"); err != nil {
		return err
	}
	root, err := (scanner{b: d.text}).object(core.start)
	if err != nil {
		return err
	}
	if err := d.noDuplicates(root, "", keyRuntimes, keyDefaultRuntime); err != nil {
		return err
	}
	if i := root.find(keyDefaultRuntime); i >= 0 {
		if err := d.wantType([]string{keyDefaultRuntime}, root.members[i].val, "string", "null"); err != nil {
			return err
		}
	}
	i := root.find(keyRuntimes)
	if i < 0 {
		return nil
	}
	// "runtimes": null is what Docker's decoder treats as absent; so do we.
	val := root.members[i].val
	if err := d.wantType([]string{keyRuntimes}, val, "object", "null"); err != nil || d.text[val.start] == 'n' {
		return err
	}
	runtimes, err := (scanner{b: d.text}).object(val.start)
	if err != nil {
		return err
	}
	if err := d.noDuplicates(runtimes, "runtimes", ""); err != nil {
		return err
	}
	for _, m := range runtimes.members {
		if err := d.wantType([]string{keyRuntimes, m.name}, m.val, "object"); err != nil {
			return err
		}
	}
	return nil
}

// wantType checks the value at s has one of the types; the first is the one
// named in the error.
func (d *Document) wantType(path []string, s span, types ...string) error {
	found := jsonType(d.text[s.start])
	for _, t := range types {
		if found == t {
			return nil
		}
	}
	line, col := position(d.text, s.start)
	return &TypeError{Key: pointer(path), Found: found, Want: types[0], Line: line, Column: col}
}

// noDuplicates refuses a repeated key among names ("" checks every key).
func (d *Document) noDuplicates(obj object, where string, names ...string) error {
	seen := map[string]int{}
	for _, m := range obj.members {
		if names[0] != "" && !slices.Contains(names, m.name) {
			continue
		}
		if first, dup := seen[m.name]; dup {
			line, _ := position(d.text, m.key.start)
			in := "at the top level"
			if where != "" {
				in = "in " + where
			}
			return fmt.Errorf("%w: %q appears twice %s (lines %d and %d); Docker would use only one of them: delete the copy you do not want",
				ErrDuplicateKey, m.name, in, first, line)
		}
		seen[m.name], _ = position(d.text, m.key.start)
	}
	return nil
}
