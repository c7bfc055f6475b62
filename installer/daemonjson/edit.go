package daemonjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Byte-level editing. Every edit is a splice of the text; the inverse pairs
// are chosen so that undoing an edit restores the exact bytes:
//
//   - a new member is appended after the last member's value as
//     `,<gap>"key": value`, and removing the last member deletes from the end
//     of the previous value to the end of its own value: the same bytes;
//   - a member is inserted into an empty object only when the object is
//     exactly `{}`, and removing an only member leaves exactly `{}`; an empty
//     object written with inner white space (`{ }`) is first normalised to
//     `{}` as a separate recorded Change, so reverting restores the spaces;
//   - a replaced value keeps its Before bytes, which are put back verbatim.

// location is where a path's value is, or would be, in the text.
type location struct {
	found       bool
	val         span
	parentFound bool   // the parent exists and is an object
	parent      object // valid when parentFound
	index       int    // member index in parent when found
}

// lookup resolves a path of object keys from the top-level value.
func (d *Document) lookup(path []string) (location, error) {
	if len(path) == 0 {
		core := d.core()
		return location{found: core.start < core.end, val: core}, nil
	}
	up, err := d.lookup(path[:len(path)-1])
	if err != nil || !up.found || d.text[up.val.start] != '{' {
		return location{}, err
	}
	obj, err := (scanner{b: d.text}).object(up.val.start)
	if err != nil {
		return location{}, err
	}
	loc := location{parentFound: true, parent: obj, index: obj.find(path[len(path)-1])}
	if loc.index >= 0 {
		loc.found, loc.val = true, obj.members[loc.index].val
	}
	return loc, nil
}

// replace splices repl over [start, end) and commits only if the result is
// still valid JSON; a bug in the layout code can then never write a broken
// daemon.json.
func (d *Document) replace(start, end int, repl []byte) error {
	text := make([]byte, 0, len(d.text)-(end-start)+len(repl))
	text = append(append(append(text, d.text[:start]...), repl...), d.text[end:]...)
	next := &Document{enc: d.enc, text: text, style: d.style}
	if err := next.checkSyntax(); err != nil {
		return fmt.Errorf("%w (%v)", errCorrupt, err)
	}
	d.text = text
	return nil
}

// setValue makes the value at path be raw and returns the bytes now there.
// With format, raw is laid out in the file's style; without, it is inserted
// verbatim (used to restore recorded Before bytes). The parent must exist.
func (d *Document) setValue(path []string, raw []byte, format bool) ([]byte, error) {
	loc, err := d.lookup(path)
	if err != nil {
		return nil, err
	}
	if len(path) == 0 {
		if loc.found {
			return raw, d.replace(loc.val.start, loc.val.end, raw)
		}
		// A file without a value gets one, ending with a newline.
		return raw, d.replace(len(d.text), len(d.text), append(bytes.Clone(raw), '\n'))
	}
	if !loc.parentFound {
		return nil, fmt.Errorf("%w: no object at %q to hold %q", errCorrupt, pointer(path[:len(path)-1]), path[len(path)-1])
	}
	if !loc.found {
		return d.appendMember(loc.parent, path[len(path)-1], raw, format)
	}
	if format {
		m := loc.parent.members[loc.index]
		inline := !bytes.ContainsRune(d.raw(span{loc.parent.open, loc.parent.close}), '\n')
		raw = d.style.format(compact(raw), lineIndent(d.text, m.key.start), !inline)
	}
	return raw, d.replace(loc.val.start, loc.val.end, raw)
}

// appendMember adds `"name": raw` as the last member of obj.
func (d *Document) appendMember(obj object, name string, raw []byte, format bool) ([]byte, error) {
	key, err := marshalCompact(name)
	if err != nil {
		return nil, err
	}
	st := d.style
	if len(obj.members) == 0 {
		base := lineIndent(d.text, obj.open)
		indent, lead, tail := base+st.unit, st.nl+base+st.unit, st.nl+base
		if !st.pretty {
			indent, lead, tail = base, "", ""
		}
		if format {
			raw = st.format(compact(raw), indent, st.pretty)
		}
		repl := lead + string(key) + st.colon + string(raw) + tail
		return raw, d.replace(obj.open+1, obj.close, []byte(repl))
	}
	last := obj.members[len(obj.members)-1]
	gap := string(d.raw(last.gap))
	colon := string(d.raw(span{last.key.end, last.val.start}))
	if strings.ContainsAny(colon, "\r\n") {
		colon = st.colon
	}
	sep, indent, pretty := gap, lineIndent(d.text, last.key.start), false
	if i := strings.LastIndexByte(gap, '\n'); i >= 0 {
		sep, indent, pretty = st.nl+gap[i+1:], gap[i+1:], true
	} else if len(obj.members) == 1 {
		sep = st.comma // the gap after '{' says nothing about the one after ','
	}
	if format {
		raw = st.format(compact(raw), indent, pretty)
	}
	repl := "," + sep + string(key) + colon + string(raw)
	return raw, d.replace(last.val.end, last.val.end, []byte(repl))
}

// removeValue deletes the value at path (a member, or the whole top level).
func (d *Document) removeValue(path []string) error {
	loc, err := d.lookup(path)
	if err != nil || !loc.found {
		return err
	}
	if len(path) == 0 {
		// Only ever undoes setValue on a file without a value, which added
		// the value and a newline after everything else.
		return d.replace(loc.val.start, len(d.text), nil)
	}
	obj, i := loc.parent, loc.index
	switch n := len(obj.members); {
	case n == 1:
		return d.replace(obj.open+1, obj.close, nil)
	case i == n-1:
		return d.replace(obj.members[i-1].val.end, obj.members[i].val.end, nil)
	default:
		return d.replace(obj.members[i].key.start, obj.members[i+1].key.start, nil)
	}
}

// record sets path to raw (formatted) and returns the Change describing it.
func (d *Document) record(path []string, raw []byte) (Change, error) {
	loc, err := d.lookup(path)
	if err != nil {
		return Change{}, err
	}
	var before []byte
	if loc.found {
		before = bytes.Clone(d.raw(loc.val))
	}
	after, err := d.setValue(path, raw, true)
	if err != nil {
		return Change{}, err
	}
	return Change{Key: pointer(path), Before: before, After: bytes.Clone(after)}, nil
}

// ensureObject makes every object on path exist, creating absent or null
// ones as `{}` and normalising empty ones written with inner white space to
// `{}`, recording each step as a Change.
func (d *Document) ensureObject(path []string) ([]Change, error) {
	var changes []Change
	for i := 0; i <= len(path); i++ {
		p := path[:i]
		loc, err := d.lookup(p)
		if err != nil {
			return changes, err
		}
		if loc.found && d.text[loc.val.start] != 'n' {
			if err := d.wantType(p, loc.val, "object"); err != nil {
				return changes, err
			}
			if loc.val.end-loc.val.start == 2 || d.hasMembers(loc.val) {
				continue
			}
		}
		c, err := d.record(p, []byte("{}"))
		if err != nil {
			return changes, err
		}
		changes = append(changes, c)
	}
	return changes, nil
}

func (d *Document) hasMembers(s span) bool {
	obj, err := (scanner{b: d.text}).object(s.start)
	return err == nil && len(obj.members) > 0
}

// transaction runs edit and restores the text if it fails, so a failed
// setter leaves the document unchanged.
func (d *Document) transaction(edit func() ([]Change, error)) ([]Change, error) {
	saved := bytes.Clone(d.text)
	changes, err := edit()
	if err != nil {
		d.text = saved
		return nil, err
	}
	return changes, nil
}

func compact(raw []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}

// pointer renders a path as a JSON Pointer (RFC 6901).
func pointer(path []string) string {
	var b strings.Builder
	for _, p := range path {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(p))
	}
	return b.String()
}

// splitPointer parses a JSON Pointer; "" is the top level.
func splitPointer(ptr string) []string {
	if ptr == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(p)
	}
	return parts
}
