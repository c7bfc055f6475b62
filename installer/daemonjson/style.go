package daemonjson

import (
	"bytes"
	"strings"
)

// style is the layout of the user's file, detected once at Parse and used
// to format only the text this package inserts.
type style struct {
	pretty bool   // one member per line; false for single-line files
	nl     string // "\n" or "\r\n"
	unit   string // one level of indentation, e.g. "\t" or "    "
	colon  string // between a key and its value, e.g. ": " or ":"
	comma  string // after ',' on a single line, e.g. " " or ""
}

// styleHook collects the first example of each layout choice.
type styleHook struct {
	b                      []byte
	unit, colon, comma     string
	haveUnit, haveColon    bool
	haveComma, sawElements bool
}

func (h *styleHook) element(open int, gap span) {
	h.sawElements = true
	ws := string(h.b[gap.start:gap.end])
	nl := strings.LastIndexByte(ws, '\n')
	if nl < 0 {
		if gap.start > open+1 && !h.haveComma { // after a comma, on the same line
			h.comma, h.haveComma = ws, true
		}
		return
	}
	if h.haveUnit || h.b[open] != '{' { // arrays are often aligned, not indented
		return
	}
	indent, base := ws[nl+1:], lineIndent(h.b, open)
	if len(indent) > len(base) && strings.HasPrefix(indent, base) {
		h.unit, h.haveUnit = indent[len(base):], true
	}
}

func (h *styleHook) afterKey(between span) {
	text := string(h.b[between.start:between.end])
	if !h.haveColon && !strings.ContainsAny(text, "\r\n") {
		h.colon, h.haveColon = text, true
	}
}

// detectStyle scans the whole text (core is the top-level value's span).
// A file with no members yet gets jq's layout: two-space indentation.
func detectStyle(b []byte, core span) (style, error) {
	h := &styleHook{b: b}
	if core.end > core.start {
		if _, err := (scanner{b: b, hook: h}).value(core.start); err != nil {
			return style{}, err
		}
	}
	st := style{
		pretty: !h.sawElements || bytes.IndexByte(b[core.start:core.end], '\n') >= 0,
		nl:     "\n",
		unit:   "  ",
		colon:  ": ",
	}
	if bytes.Contains(b, []byte("\r\n")) {
		st.nl = "\r\n"
	}
	if h.haveUnit {
		st.unit = h.unit
	}
	if h.haveColon {
		st.colon = h.colon
	}
	if h.haveComma {
		st.comma = h.comma
	} else if strings.HasSuffix(st.colon, " ") {
		st.comma = " "
	}
	return st, nil
}

// format lays out compact JSON (as produced by encoding/json) in this style.
// indent is the indentation of the line the value starts on; pretty may be
// false to force a single line (inserting into a single-line object).
func (st style) format(compact []byte, indent string, pretty bool) []byte {
	out := make([]byte, 0, 2*len(compact))
	newline := func(depth int) {
		out = append(out, st.nl...)
		out = append(out, indent...)
		for range depth {
			out = append(out, st.unit...)
		}
	}
	depth, inString, escaped := 0, false, false
	for i := 0; i < len(compact); i++ {
		c := compact[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			out = append(out, c)
		case '{', '[':
			out = append(out, c)
			if i+1 < len(compact) && (compact[i+1] == '}' || compact[i+1] == ']') {
				out = append(out, compact[i+1])
				i++
				continue
			}
			depth++
			if pretty {
				newline(depth)
			}
		case '}', ']':
			depth--
			if pretty {
				newline(depth)
			}
			out = append(out, c)
		case ',':
			out = append(out, c)
			if pretty {
				newline(depth)
			} else {
				out = append(out, st.comma...)
			}
		case ':':
			out = append(out, st.colon...)
		default:
			out = append(out, c)
		}
	}
	return out
}
