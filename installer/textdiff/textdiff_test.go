package textdiff

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUnified(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{"equal", "x\n", "x\n", ""},
		{"add to empty", "", "{}\n", "--- a\n+++ b\n@@ -0,0 +1 @@\n+{}\n"},
		{"remove all", "{}\n", "", "--- a\n+++ b\n@@ -1 +0,0 @@\n-{}\n"},
		{"replace one line", "{}\n", "{\"runtimes\": {}}\n", "--- a\n+++ b\n@@ -1 +1 @@\n-{}\n+{\"runtimes\": {}}\n"},
		{"insert in the middle", "{\n  \"a\": 1\n}\n", "{\n  \"a\": 1,\n  \"b\": 2\n}\n",
			"--- a\n+++ b\n@@ -1,3 +1,4 @@\n {\n-  \"a\": 1\n+  \"a\": 1,\n+  \"b\": 2\n }\n"},
		{"missing final newline", "{}", "{}\n", "--- a\n+++ b\n@@ -1 +1 @@\n-{}\n\\ No newline at end of file\n+{}\n"},
		{"two hunks far apart", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "x\n2\n3\n4\n5\n6\n7\n8\n9\ny\n",
			"--- a\n+++ b\n@@ -1,4 +1,4 @@\n-1\n+x\n 2\n 3\n 4\n@@ -7,4 +7,4 @@\n 7\n 8\n 9\n-10\n+y\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unified("a", "b", tt.a, tt.b); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// The output must apply to a as a patch, giving b. The patch is applied in Go (apply, below),
// so the test needs no patch(1) or diff(1).
func TestUnifiedApplies(t *testing.T) {
	pairs := [][2]string{
		{"{\n  \"debug\": true\n}\n", "{\n  \"debug\": true,\n  \"runtimes\": {\n    \"kata\": {}\n  }\n}\n"},
		{strings.Repeat("line\n", 20) + "end\n", "start\n" + strings.Repeat("line\n", 20)},
		{"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n", "a\nB\nc\nd\ne\nf\ng\nh\ni\nJ\nk\nl\n"},
		{"{}", "{}\n"},
		{"", "{}\n"},
	}
	for i, p := range pairs {
		diff := Unified("a/daemon.json", "b/daemon.json", p[0], p[1])
		got, err := apply(diff, p[0])
		if err != nil {
			t.Fatalf("pair %d: applying\n%s: %v", i, diff, err)
		}
		if got != p[1] {
			t.Errorf("pair %d: patched text\n%q\nwant\n%q", i, got, p[1])
		}
	}
}

// apply itself must refuse a diff made for another text, or TestUnifiedApplies proves nothing.
func TestApplyRefusesMismatch(t *testing.T) {
	diff := Unified("a", "b", "x\ny\n", "x\nz\n")
	if got, err := apply(diff, "x\nw\n"); err == nil {
		t.Fatalf("applied to a text it does not fit: %q", got)
	}
}

var hunkHeader = regexp.MustCompile(`^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@$`)

// apply applies a unified diff to text the way patch(1) does without fuzz: every context and
// removed line must match the text where the hunk header says.
func apply(diff, text string) (string, error) {
	old := strings.SplitAfter(text, "\n")
	var out []string
	next := 0 // the next line of old to copy
	lines := strings.SplitAfter(diff, "\n")
	for i := 2; i < len(lines) && lines[i] != ""; i++ { // after the --- and +++ lines
		l := lines[i]
		if m := hunkHeader.FindStringSubmatch(strings.TrimSuffix(l, "\n")); m != nil {
			start, _ := strconv.Atoi(m[1])
			if start > 0 && l[4:6] != "0," {
				start-- // 1-based, except for an empty range
			}
			for ; next < start; next++ {
				out = append(out, old[next])
			}
			continue
		}
		if l == "\\ No newline at end of file\n" {
			if lines[i-1][0] != '-' { // a removed line was matched without its newline already
				out[len(out)-1] = strings.TrimSuffix(out[len(out)-1], "\n")
			}
			continue
		}
		switch body := l[1:]; l[0] {
		case '+':
			out = append(out, body)
		case ' ', '-':
			if next >= len(old) || strings.TrimSuffix(old[next], "\n") != strings.TrimSuffix(body, "\n") {
				return "", fmt.Errorf("line %d of the diff (%q) does not match line %d of the text", i+1, l, next+1)
			}
			if l[0] == ' ' {
				out = append(out, old[next])
			}
			next++
		default:
			return "", fmt.Errorf("line %d of the diff: %q", i+1, l)
		}
	}
	return strings.Join(append(out, old[next:]...), ""), nil
}
