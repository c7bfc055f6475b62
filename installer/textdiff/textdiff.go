// Package textdiff renders the difference between two small texts as a unified diff, the format
// of `diff -u` and `git diff`, for showing a planned daemon.json edit before it is made.
package textdiff

import (
	"fmt"
	"strings"
)

// context is the number of unchanged lines shown around each change, as diff -u does.
const context = 3

// maxCells bounds the LCS table (lines(a) * lines(b)); a daemon.json is a few dozen lines, and a
// text too large for the table is shown as a whole replacement instead.
const maxCells = 4 << 20

// op is one line of an edit script.
type op struct {
	kind byte // ' ', '-', '+'
	line string
}

// Unified returns the unified diff of a and b under the names oldName and newName, or "" when
// they are equal. A text that does not end in a newline is marked as diff does.
func Unified(oldName, newName, a, b string) string {
	if a == b {
		return ""
	}
	ops := script(splitLines(a), splitLines(b))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", oldName, newName)
	for _, h := range hunks(ops) {
		writeHunk(&out, ops, h)
	}
	return out.String()
}

// splitLines splits after each '\n'; a last line without one keeps no newline, so that a missing
// final newline shows up in the diff.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// script computes a shortest edit script through the longest common subsequence.
func script(a, b []string) []op {
	if len(a)*len(b) > maxCells {
		ops := make([]op, 0, len(a)+len(b))
		for _, l := range a {
			ops = append(ops, op{'-', l})
		}
		for _, l := range b {
			ops = append(ops, op{'+', l})
		}
		return ops
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] > lcs[i+1][j]):
			ops = append(ops, op{'+', b[j]})
			j++
		default:
			ops = append(ops, op{'-', a[i]})
			i++
		}
	}
	return ops
}

// hunk is a range of ops [start, end) to print.
type hunk struct{ start, end int }

// hunks groups changes whose context overlaps into one hunk.
func hunks(ops []op) []hunk {
	var hs []hunk
	for i, o := range ops {
		if o.kind == ' ' {
			continue
		}
		start, end := max(0, i-context), min(len(ops), i+context+1)
		if n := len(hs); n > 0 && start <= hs[n-1].end {
			hs[n-1].end = max(hs[n-1].end, end)
			continue
		}
		hs = append(hs, hunk{start, end})
	}
	return hs
}

func writeHunk(out *strings.Builder, ops []op, h hunk) {
	oldStart, newStart := 1, 1
	for _, o := range ops[:h.start] {
		if o.kind != '+' {
			oldStart++
		}
		if o.kind != '-' {
			newStart++
		}
	}
	oldLen, newLen := 0, 0
	for _, o := range ops[h.start:h.end] {
		if o.kind != '+' {
			oldLen++
		}
		if o.kind != '-' {
			newLen++
		}
	}
	fmt.Fprintf(out, "@@ -%s +%s @@\n", rangeOf(oldStart, oldLen), rangeOf(newStart, newLen))
	for _, o := range ops[h.start:h.end] {
		out.WriteByte(o.kind)
		out.WriteString(o.line)
		if !strings.HasSuffix(o.line, "\n") {
			out.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// rangeOf formats a hunk range as diff does: "start,len", just "start" for one line, and the
// line before the hunk for an empty range.
func rangeOf(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start-1)
	case 1:
		return fmt.Sprintf("%d", start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}
