package textdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
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

// The output must be a patch that patch(1) applies to a, giving b.
func TestUnifiedAppliesWithPatch(t *testing.T) {
	patch := testreq.Command(t, "patch")
	pairs := [][2]string{
		{"{\n  \"debug\": true\n}\n", "{\n  \"debug\": true,\n  \"runtimes\": {\n    \"kata\": {}\n  }\n}\n"},
		{strings.Repeat("line\n", 20) + "end\n", "start\n" + strings.Repeat("line\n", 20)},
		{"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n", "a\nB\nc\nd\ne\nf\ng\nh\ni\nJ\nk\nl\n"},
	}
	for i, p := range pairs {
		dir := t.TempDir()
		file := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(file, []byte(p[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(patch, "-s", file)
		cmd.Stdin = strings.NewReader(Unified("a/daemon.json", "b/daemon.json", p[0], p[1]))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pair %d: patch: %v\n%s", i, err, out)
		}
		got, _ := os.ReadFile(file)
		if string(got) != p[1] {
			t.Errorf("pair %d: patched text\n%q\nwant\n%q", i, got, p[1])
		}
	}
}
