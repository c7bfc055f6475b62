package daemonjson

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func parse(t *testing.T, s string) *Document {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return d
}

func TestSyntaxErrorPosition(t *testing.T) {
	for _, tc := range []struct {
		in        string
		line, col int
	}{
		{"{\n  \"a\": 1,\n}", 3, 1},                // trailing comma: at '}'
		{"{\"a\": 1 /* c */}", 1, 9},               // comment
		{"{\"é\": 1,, }", 1, 9},                    // columns count characters
		{"  \n\n{\"a\": tru}", 3, 10},              // leading white space counted
		{"{\"a\":", 1, 6},                          // truncated: just past the end
		{"\xef\xbb\xbf{\"a\" 1}", 1, 6},            // BOM is not a column
		{"{} []", 1, 4},                            // second value
		{"{\"s\": \"\xff\"}", 1, 8},                // invalid UTF-8
		{"\xff\xfe{\x00\x00\xd8}\x00", 1, 2},       // unpaired surrogate in UTF-16
		{"{\"a\":\"\u00a0\"}\u00a0\u00a0x", 1, 10}, // a no-break space is no JSON space
	} {
		_, err := Parse([]byte(tc.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want *SyntaxError", tc.in, err)
			continue
		}
		if strings.Contains(tc.in, "\u00a0") && !strings.Contains(se.Msg, "U+00A0") {
			t.Errorf("Parse(%q): message %q does not name the character", tc.in, se.Msg)
		}
		if se.Line != tc.line || se.Column != tc.col {
			t.Errorf("Parse(%q): line %d column %d, want %d:%d (%v)", tc.in, se.Line, se.Column, tc.line, tc.col, se)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	var te *TypeError
	if _, err := Parse([]byte(`{"runtimes": {"x": []}}`)); !errors.As(err, &te) ||
		te.Key != "/runtimes/x" || te.Found != "array" || te.Want != "object" {
		t.Errorf("entry not an object: %v", err)
	}
	if _, err := Parse([]byte(`{"default-runtime": true}`)); !errors.As(err, &te) || te.Key != "/default-runtime" {
		t.Errorf("default-runtime boolean: %v", err)
	}
	if _, err := Parse([]byte("{\"s\": \"\xc3\"}")); !errors.Is(err, ErrEncoding) {
		t.Errorf("invalid UTF-8: %v, want ErrEncoding", err)
	}
	if _, err := Parse([]byte("\xfe\xff\x00{\x00}\x00")); !errors.Is(err, ErrEncoding) {
		t.Errorf("odd UTF-16: %v, want ErrEncoding", err)
	}
	if _, err := Parse([]byte(`{"default-runtime": "a", "default-runtime": "b"}`)); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("duplicate default-runtime: %v", err)
	}
	d := parse(t, `{"runtimes": {"kata": {"runtimeType": "io.containerd.kata.v2"}}}`)
	if _, err := d.SetRuntime("kata", kataRuntime, false); !errors.Is(err, ErrRuntimeConflict) {
		t.Errorf("conflict: %v", err)
	}
	for _, name := range []string{"runc", "", "a b", ".x", "x/y", strings.Repeat("a", 256)} {
		if _, err := d.SetRuntime(name, kataRuntime, false); !errors.Is(err, ErrInvalidRuntime) {
			t.Errorf("SetRuntime(%q): %v, want ErrInvalidRuntime", name, err)
		}
	}
	for _, rt := range []Runtime{
		{},
		{Path: "/bin/x", RuntimeType: "io.containerd.x.v2"},
		{Path: "/bin/x", Options: map[string]any{"a": 1}},
		{RuntimeType: "io.containerd.x.v2", RuntimeArgs: []string{"-d"}},
		{RuntimeType: "/opt/../x"},
		{Path: "./runc"},
	} {
		if _, err := d.SetRuntime("x", rt, false); !errors.Is(err, ErrInvalidRuntime) {
			t.Errorf("SetRuntime(%+v): %v, want ErrInvalidRuntime", rt, err)
		}
	}
	if _, err := d.SetDefaultRuntime("nvidia"); !errors.Is(err, ErrInvalidRuntime) {
		t.Errorf("default to an unknown runtime: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	d := parse(t, `{"runtimes": {"b": {"path": "/b"}, "a": {"runtimeType": "io.containerd.a.v2"}}, "default-runtime": "a"}`)
	if got := d.Runtimes(); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Runtimes = %v", got)
	}
	if raw, ok := d.Runtime("b"); !ok || string(raw) != `{"path": "/b"}` {
		t.Errorf("Runtime(b) = %s, %v", raw, ok)
	}
	if _, ok := d.Runtime("c"); ok {
		t.Error("Runtime(c) found")
	}
	if d.DefaultRuntime() != "a" {
		t.Errorf("DefaultRuntime = %q", d.DefaultRuntime())
	}
	for _, s := range []string{"", "{}", `{"runtimes": null, "default-runtime": null}`} {
		d := parse(t, s)
		if d.Runtimes() != nil || d.DefaultRuntime() != "" {
			t.Errorf("%q: Runtimes %v DefaultRuntime %q", s, d.Runtimes(), d.DefaultRuntime())
		}
		if ch, err := d.RemoveRuntime("kata"); ch != nil || err != nil {
			t.Errorf("%q: RemoveRuntime = %v, %v", s, ch, err)
		}
	}
}

// "runtimes": null is what Docker treats as absent: it is replaced by an
// object, and reverting puts the null back.
func TestRuntimesNull(t *testing.T) {
	in := "{\"runtimes\": null}\n"
	d := parse(t, in)
	changes, err := d.SetRuntime("kata", kataRuntime, false)
	if err != nil {
		t.Fatal(err)
	}
	if changes[0].Key != "/runtimes" || string(changes[0].Before) != "null" || string(changes[0].After) != "{}" {
		t.Errorf("first change = %+v", changes[0])
	}
	res, err := Revert(d, changes)
	if err != nil || string(d.Bytes()) != in {
		t.Fatalf("revert = %q, %v", d.Bytes(), err)
	}
	if !strings.Contains(string(res.Unload), `"runtimes": {}`) {
		t.Errorf("Unload = %s, want runtimes present so SIGHUP unloads kata", res.Unload)
	}
}

func TestSetRuntimeIdenticalIsNoChange(t *testing.T) {
	in := `{"runtimes": {"kata": {"options": {"ConfigPath": "/opt/kata-deploy/share/defaults/configuration-qemu.toml"},
	  "runtimeType": "/opt/kata-deploy/bin/containerd-shim-kata-v2"}}}`
	d := parse(t, in)
	for _, force := range []bool{false, true} {
		changes, err := d.SetRuntime("kata", kataRuntime, force)
		if err != nil || changes != nil || string(d.Bytes()) != in {
			t.Fatalf("force=%v: changes %v err %v", force, changes, err)
		}
	}
}

func TestRemoveLastRuntimeKeepsKey(t *testing.T) {
	d := parse(t, "{\n  \"runtimes\": {\n    \"kata\": {\"path\": \"/k\"}\n  }\n}\n")
	changes, err := d.RemoveRuntime("kata")
	if err != nil || len(changes) != 1 || changes[0].After != nil || string(changes[0].Before) != `{"path": "/k"}` {
		t.Fatalf("RemoveRuntime = %+v, %v", changes, err)
	}
	if got := string(d.Bytes()); got != "{\n  \"runtimes\": {}\n}\n" {
		t.Fatalf("after removing the last runtime: %q", got)
	}
}

func TestDefaultRuntime(t *testing.T) {
	d := parse(t, `{"runtimes": {"kata": {"path": "/k"}}}`)
	if ch, err := d.ResetDefaultRuntime(); err != nil || len(ch) != 1 || d.DefaultRuntime() != "runc" {
		t.Fatalf("ResetDefaultRuntime on an absent key: %v %v %q", ch, err, d.DefaultRuntime())
	}
	if ch, err := d.ResetDefaultRuntime(); err != nil || ch != nil {
		t.Fatalf("ResetDefaultRuntime twice: %v %v", ch, err)
	}
	ch, err := d.SetDefaultRuntime("kata")
	if err != nil || len(ch) != 1 || string(ch[0].Before) != `"runc"` || string(ch[0].After) != `"kata"` {
		t.Fatalf("SetDefaultRuntime = %+v, %v", ch, err)
	}
	if _, err := d.RemoveRuntime("kata"); !errors.Is(err, ErrRuntimeInUse) {
		t.Fatalf("removing the default runtime: %v", err)
	}
	if want := `{"runtimes": {"kata": {"path": "/k"}}, "default-runtime": "kata"}`; string(d.Bytes()) != want {
		t.Fatalf("got %s\nwant %s", d.Bytes(), want)
	}
}

// install is what kata-deploy install does; it returns the changes.
func installInto(t *testing.T, d *Document) []Change {
	t.Helper()
	changes, err := d.SetRuntime("kata", kataRuntime, false)
	if err != nil {
		t.Fatal(err)
	}
	more, err := d.SetDefaultRuntime("kata")
	if err != nil {
		t.Fatal(err)
	}
	return append(changes, more...)
}

func TestRevertKeepsLaterUserEdits(t *testing.T) {
	d := parse(t, "{\n  \"debug\": true\n}\n")
	changes := installInto(t, d)
	// The user adds a runtime and makes it the default after install.
	if _, err := d.SetRuntime("runsc", Runtime{Path: "/usr/bin/runsc"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetDefaultRuntime("runsc"); err != nil {
		t.Fatal(err)
	}
	res, err := Revert(d, changes)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"debug\": true,\n  \"runtimes\": {\n    \"runsc\": {\n      \"path\": \"/usr/bin/runsc\"\n    }\n  },\n  \"default-runtime\": \"runsc\"\n}\n"
	if got := string(d.Bytes()); got != want {
		t.Fatalf("after revert:\n%s\nwant:\n%s", got, want)
	}
	var keys []string
	for _, k := range res.Kept {
		keys = append(keys, k.Change.Key)
	}
	if !slices.Equal(keys, []string{"/default-runtime", "/runtimes"}) {
		t.Fatalf("Kept = %v, want default-runtime and runtimes (both edited by the user)", keys)
	}
	if string(res.Kept[0].Current) != `"runsc"` {
		t.Errorf("Kept current = %s", res.Kept[0].Current)
	}
	if len(res.Reverted) != 1 || res.Reverted[0].Key != "/runtimes/kata" {
		t.Errorf("Reverted = %v", res.Reverted)
	}
	if res.Unload != nil {
		t.Errorf("Unload = %s, want nil: runtimes and default-runtime stay present", res.Unload)
	}
}

func TestRevertUserEditedKataEntryIsKept(t *testing.T) {
	d := parse(t, `{}`)
	changes := installInto(t, d)
	if _, err := d.SetDefaultRuntime("runc"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetRuntime("kata", Runtime{RuntimeType: "io.containerd.kata.v2"}, true); err != nil {
		t.Fatal(err)
	}
	res, err := Revert(d, changes)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Runtime("kata"); !ok || len(res.Kept) != 2 || res.Kept[0].Change.Key != "/runtimes/kata" {
		t.Fatalf("the user's own kata entry must survive: %s, kept %v", d.Bytes(), res.Kept)
	}
	// "default-runtime": "runc" means what an absent key means: reverted.
	if _, err := d.lookup([]string{keyDefaultRuntime}); err != nil || strings.Contains(string(d.Bytes()), "default-runtime") {
		t.Fatalf("default-runtime runc not reverted to absent: %s", d.Bytes())
	}
}

// A revert interrupted after writing the Unload document, then run again
// from that file, still ends byte-identical to the original.
func TestRevertTwoPhaseResumes(t *testing.T) {
	for _, in := range []string{"", "{\n  \"debug\": true\n}\n", `{"default-runtime": null}`, `{"default-runtime": ""}`} {
		d := parse(t, in)
		changes := installInto(t, d)
		res, err := Revert(d, changes)
		if err != nil || string(d.Bytes()) != in {
			t.Fatalf("%q: revert = %q, %v", in, d.Bytes(), err)
		}
		if res.Unload == nil {
			t.Fatalf("%q: no Unload, but the original lacks runtimes", in)
		}
		u := parse(t, string(res.Unload))
		if u.DefaultRuntime() != "runc" || u.Runtimes() == nil && !strings.Contains(string(res.Unload), `"runtimes": {}`) {
			t.Fatalf("%q: Unload = %s", in, res.Unload)
		}
		res2, err := Revert(u, changes)
		if err != nil || string(u.Bytes()) != in || len(res2.Kept) != 0 {
			t.Fatalf("%q: resumed revert = %q, kept %v, %v", in, u.Bytes(), res2.Kept, err)
		}
		// And once more: a finished revert is a no-op.
		res3, err := Revert(u, changes)
		if err != nil || string(u.Bytes()) != in || len(res3.Reverted) != 0 || len(res3.Kept) != 0 {
			t.Fatalf("%q: third revert = %q, %+v, %v", in, u.Bytes(), res3, err)
		}
	}
}

func TestRevertNoUnloadWhenKeysStay(t *testing.T) {
	d := parse(t, `{"runtimes": {"runsc": {"path": "/r"}}, "default-runtime": "runsc"}`)
	changes := installInto(t, d)
	res, err := Revert(d, changes)
	if err != nil || res.Unload != nil {
		t.Fatalf("Unload = %s, %v; want nil", res.Unload, err)
	}
}

func TestRevertBadKey(t *testing.T) {
	in := `{"runtimes": {}}`
	d := parse(t, in)
	changes := installInto(t, d)
	mid := string(d.Bytes())
	for _, bad := range []Change{
		{Key: "runtimes"},
		{Key: "/x", Before: json.RawMessage(`1, "injected": true`)},
	} {
		_, err := Revert(d, append(slices.Clone(changes), bad))
		if err == nil || string(d.Bytes()) != mid {
			t.Fatalf("bad change %+v: err %v, document %s", bad, err, d.Bytes())
		}
	}
}

func TestFailedSetterChangesNothing(t *testing.T) {
	in := `{"runtimes": {"kata": {"path": "/k"}}, "default-runtime": 3}`
	if _, err := Parse([]byte(in)); err == nil {
		t.Fatal("want a type error")
	}
	d := parse(t, `{"runtimes": {"kata": {"path": "/k"}}}`)
	before := string(d.Bytes())
	if _, err := d.SetRuntime("kata", kataRuntime, false); err == nil || string(d.Bytes()) != before {
		t.Fatalf("conflict changed the document: %s", d.Bytes())
	}
}
