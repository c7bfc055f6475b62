package daemonjson

import (
	"bytes"
	"encoding/json"
	"errors"
)

// The scanner finds byte spans in text that encoding/json has already
// accepted. It never decides validity itself; it only needs to be right on
// valid JSON. It still returns errCorrupt instead of panicking if that
// assumption is ever broken, so a bug cannot crash the installer.

var errCorrupt = errors.New("internal error: daemon.json scanner lost its place; please report this bug")

// span is a half-open byte range [start, end) of the text.
type span struct{ start, end int }

// member is one "key": value pair of an object.
type member struct {
	name string // decoded key
	gap  span   // whitespace before the key (after '{' or ',')
	key  span   // the quoted key as written
	val  span   // the value as written
}

// object is a JSON object found in the text.
type object struct {
	open, close int // offsets of '{' and '}'
	members     []member
}

// layoutHook observes the white space around elements while scanning, for
// style detection: element gets the offset of the container's opening
// bracket and the white space just before an element (after '{', '[' or
// ','); afterKey gets the text between a key and its value.
type layoutHook interface {
	element(open int, gap span)
	afterKey(between span)
}

type scanner struct {
	b    []byte
	hook layoutHook // may be nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDelim(c byte) bool { return c == ',' || c == ':' || c == ']' || c == '}' }

func (s scanner) skipSpace(i int) int {
	for i < len(s.b) && isSpace(s.b[i]) {
		i++
	}
	return i
}

// value returns the end of the value starting at i.
func (s scanner) value(i int) (int, error) {
	if i >= len(s.b) {
		return 0, errCorrupt
	}
	switch s.b[i] {
	case '"':
		return s.str(i)
	case '{':
		obj, err := s.object(i)
		return obj.close + 1, err
	case '[':
		return s.array(i)
	}
	j := i
	for j < len(s.b) && !isSpace(s.b[j]) && !isDelim(s.b[j]) {
		j++
	}
	if j == i {
		return 0, errCorrupt
	}
	return j, nil
}

func (s scanner) str(i int) (int, error) {
	for j := i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errCorrupt
}

func (s scanner) expect(i int, c byte) error {
	if i >= len(s.b) || s.b[i] != c {
		return errCorrupt
	}
	return nil
}

// object scans the object starting at i (which must be '{').
func (s scanner) object(i int) (object, error) {
	obj := object{open: i}
	if err := s.expect(i, '{'); err != nil {
		return obj, err
	}
	j := s.skipSpace(i + 1)
	if j < len(s.b) && s.b[j] == '}' {
		obj.close = j
		return obj, nil
	}
	gapStart := i + 1
	for {
		m, end, err := s.member(i, span{gapStart, j})
		if err != nil {
			return obj, err
		}
		obj.members = append(obj.members, m)
		j = s.skipSpace(end)
		if j >= len(s.b) {
			return obj, errCorrupt
		}
		if s.b[j] == '}' {
			obj.close = j
			return obj, nil
		}
		if err := s.expect(j, ','); err != nil {
			return obj, err
		}
		gapStart = j + 1
		j = s.skipSpace(j + 1)
	}
}

// member scans `"key" : value` starting at gap.end.
func (s scanner) member(open int, gap span) (member, int, error) {
	m := member{gap: gap}
	if s.hook != nil {
		s.hook.element(open, gap)
	}
	keyEnd, err := s.str(gap.end)
	if err != nil {
		return m, 0, err
	}
	m.key = span{gap.end, keyEnd}
	if m.name, err = decodeKey(s.b[gap.end:keyEnd]); err != nil {
		return m, 0, err
	}
	colon := s.skipSpace(keyEnd)
	if err := s.expect(colon, ':'); err != nil {
		return m, 0, err
	}
	valStart := s.skipSpace(colon + 1)
	if s.hook != nil {
		s.hook.afterKey(span{keyEnd, valStart})
	}
	valEnd, err := s.value(valStart)
	m.val = span{valStart, valEnd}
	return m, valEnd, err
}

func (s scanner) array(i int) (int, error) {
	j := s.skipSpace(i + 1)
	if j < len(s.b) && s.b[j] == ']' {
		return j + 1, nil
	}
	gapStart := i + 1
	for {
		if s.hook != nil {
			s.hook.element(i, span{gapStart, j})
		}
		end, err := s.value(j)
		if err != nil {
			return 0, err
		}
		j = s.skipSpace(end)
		if j >= len(s.b) {
			return 0, errCorrupt
		}
		if s.b[j] == ']' {
			return j + 1, nil
		}
		if err := s.expect(j, ','); err != nil {
			return 0, err
		}
		gapStart = j + 1
		j = s.skipSpace(j + 1)
	}
}

func decodeKey(quoted []byte) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 && len(quoted) >= 2 {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var name string
	if err := json.Unmarshal(quoted, &name); err != nil {
		return "", errCorrupt
	}
	return name, nil
}

// jsonType names the type of the value starting with c.
func jsonType(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// lineIndent returns the spaces and tabs that start the line holding off.
func lineIndent(b []byte, off int) string {
	start := bytes.LastIndexByte(b[:off], '\n') + 1
	end := start
	for end < off && (b[end] == ' ' || b[end] == '\t') {
		end++
	}
	return string(b[start:end])
}

// find returns the index of the member called name, or -1. With duplicate
// keys the last one wins, as in encoding/json (Parse refuses duplicates of
// the keys this package edits).
func (o object) find(name string) int {
	for i := len(o.members) - 1; i >= 0; i-- {
		if o.members[i].name == name {
			return i
		}
	}
	return -1
}
