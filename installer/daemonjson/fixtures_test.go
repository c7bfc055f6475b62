package daemonjson

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/cases/*.want and *.err from the current output (review the diff!)")

// op is one edit applied to a fixture.
type op func(d *Document) ([]Change, error)

func install(name string, rt Runtime, force, setDefault bool) op {
	return func(d *Document) ([]Change, error) {
		changes, err := d.SetRuntime(name, rt, force)
		if err != nil || !setDefault {
			return changes, err
		}
		more, err := d.SetDefaultRuntime(name)
		return append(changes, more...), err
	}
}

func remove(name string) op {
	return func(d *Document) ([]Change, error) { return d.RemoveRuntime(name) }
}

var (
	installKata        = install("kata", kataRuntime, false, false)
	installKataDefault = install("kata", kataRuntime, false, true)
)

// Each case reads testdata/cases/<name>.json (a missing file for "missing"),
// applies op, and compares with <name>.want (the new file) or <name>.err (the
// error message, and the document must be unchanged). Every successful case
// must also revert byte-for-byte to the input unless noRoundTrip says why.
var cases = []struct {
	name        string
	op          op
	noRoundTrip string
}{
	{name: "missing", op: installKataDefault},
	{name: "empty", op: installKata},
	{name: "whitespace", op: installKata},
	{name: "empty-object", op: installKataDefault},
	{name: "empty-object-spaces", op: installKata},
	{name: "bom-utf8", op: installKata},
	{name: "bom-utf16le", op: installKataDefault},
	{name: "bom-utf16be", op: installKata},
	{name: "utf16-odd", op: installKata},
	{name: "invalid-utf8", op: installKata},
	{name: "comment", op: installKata},
	{name: "trailing-comma", op: installKata},
	{name: "truncated", op: installKata},
	{name: "two-values", op: installKata},
	{name: "runtimes-null", op: installKata},
	{name: "runtimes-array", op: installKata},
	{name: "runtimes-string", op: installKata},
	{name: "runtimes-empty-spaces", op: installKata},
	{name: "entry-not-object", op: installKata},
	{name: "default-runtime-number", op: installKata},
	{name: "default-runtime-null", op: installKataDefault},
	{name: "top-level-array", op: installKata},
	{name: "top-level-string", op: installKata},
	{name: "identical-entry", op: installKata},
	{name: "identical-entry-reordered", op: installKata},
	{name: "different-entry", op: installKata},
	{name: "different-entry-forced", op: install("kata", kataRuntime, true, false)},
	{name: "other-runtimes", op: installKataDefault},
	{name: "default-runtime-set", op: installKataDefault},
	{name: "big-number", op: installKata},
	{name: "unicode-html", op: installKata},
	{name: "unicode-spaces", op: installKata},
	{name: "tabs", op: installKataDefault},
	{name: "four-spaces", op: installKata},
	{name: "compact", op: installKataDefault},
	{name: "compact-spaced", op: installKata},
	{name: "no-trailing-newline", op: installKata},
	{name: "crlf", op: installKataDefault},
	{name: "nested", op: installKata},
	{name: "duplicate-runtimes", op: installKata},
	{name: "duplicate-runtime-name", op: installKata},
	{name: "duplicate-other-keys", op: installKata},
	{name: "escaped-key", op: installKata},
	{name: "runc-name", op: install("runc", kataRuntime, false, false)},
	{name: "bad-name-slash", op: install("kata/v2", kataRuntime, false, false)},
	{name: "bad-name-dash", op: install("-kata", kataRuntime, false, false)},
	{name: "bad-name-empty", op: install("", kataRuntime, false, false)},
	{name: "path-and-runtimetype", op: install("kata", Runtime{Path: "/usr/bin/kata-runtime", RuntimeType: "io.containerd.kata.v2"}, false, false)},
	{name: "runtimeargs-with-type", op: install("kata", Runtime{RuntimeType: "io.containerd.kata.v2", RuntimeArgs: []string{"--debug"}}, false, false)},
	{name: "relative-shim-path", op: install("kata", Runtime{RuntimeType: "bin/containerd-shim-kata-v2"}, false, false)},
	{name: "legacy-path-runtime", op: install("kata-runc", Runtime{Path: "/usr/bin/kata-runtime", RuntimeArgs: []string{"--log-level=debug", "a&b<c>"}}, false, false)},
	{name: "remove-kata", op: remove("kata")},
	{name: "remove-middle-kata", op: remove("kata"), noRoundTrip: "reverting a removal appends the entry at the end"},
	{name: "remove-last-kata", op: remove("kata")},
	{name: "remove-default-kata", op: remove("kata")},
}

func TestFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range cases {
		seen[tc.name+".json"] = true
		t.Run(tc.name, func(t *testing.T) { runCase(t, tc.name, tc.op, tc.noRoundTrip) })
	}
	inputs, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	for _, p := range inputs {
		if !seen[filepath.Base(p)] {
			t.Errorf("%s has no entry in the cases table", p)
		}
	}
	if len(cases) < 25 {
		t.Errorf("only %d fixtures", len(cases))
	}
}

func runCase(t *testing.T, name string, apply op, noRoundTrip string) {
	base := filepath.Join("testdata", "cases", name)
	input, err := os.ReadFile(base + ".json")
	if errors.Is(err, os.ErrNotExist) && name == "missing" {
		input = nil
	} else if err != nil {
		t.Fatal(err)
	}
	doc, err := Parse(input)
	var changes []Change
	if err == nil {
		changes, err = apply(doc)
		if got := doc.Bytes(); err != nil && !bytes.Equal(got, input) {
			t.Fatalf("failed edit changed the document:\n%s", got)
		}
	}
	if err != nil {
		golden(t, base+".err", []byte(err.Error()+"\n"), base+".want")
		return
	}
	out := doc.Bytes()
	golden(t, base+".want", out, base+".err")
	if _, err := Parse(out); err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	res, err := Revert(doc, changes)
	if err != nil {
		t.Fatalf("revert: %v", err)
	}
	if len(res.Kept) > 0 {
		t.Fatalf("revert kept %v", res.Kept)
	}
	if got := doc.Bytes(); !bytes.Equal(got, input) && noRoundTrip == "" {
		t.Fatalf("revert is not byte-identical:\nwant %q\ngot  %q", input, got)
	}
	if res.Unload != nil {
		if _, err := Parse(res.Unload); err != nil {
			t.Fatalf("unload document does not parse: %v\n%s", err, res.Unload)
		}
	}
}

// golden compares got with the file at path, or writes it with -update.
// other is the alternative golden file, which must not exist.
func golden(t *testing.T, path string, got []byte, other string) {
	t.Helper()
	if *update {
		_ = os.Remove(other)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := os.Stat(other); err == nil {
		t.Fatalf("expected the outcome in %s, got %s:\n%s", other, filepath.Ext(path), got)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update and review)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\nwant %q\ngot  %q", path, want, got)
	}
}
