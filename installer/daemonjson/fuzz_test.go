package daemonjson

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode"
)

// kataRuntime is the entry kata-deploy installs.
var kataRuntime = Runtime{
	RuntimeType: "/opt/kata-deploy/bin/containerd-shim-kata-v2",
	Options:     map[string]any{"ConfigPath": "/opt/kata-deploy/share/defaults/configuration-qemu.toml"},
}

// dockerView decodes data the way dockerd does (BOM-aware, trimmed,
// encoding/json with numbers kept), independently of the scanner.
func dockerView(t *testing.T, data []byte) map[string]any {
	t.Helper()
	_, text, err := decodeText(data)
	if err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	text = bytes.TrimFunc(text, unicode.IsSpace)
	m := map[string]any{}
	if len(text) == 0 {
		return m
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not valid JSON for Docker: %v\n%s", err, text)
	}
	if dec.More() {
		t.Fatalf("trailing data after the top-level value:\n%s", text)
	}
	return m
}

func FuzzInstallUninstall(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "cases", "*.json"))
	for _, p := range inputs {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data, true)
		}
	}
	for _, s := range []string{"", " ", "{}", "{ }", `{"runtimes":{ }}`, `{"default-runtime":null}`,
		"{\"a\":1,\n\"b\":[1,\n 2]}", "\xef\xbb\xbf{}", "{\"\\u0072untimes\": {}}"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, setDefault bool) {
		doc, err := Parse(data)
		if err != nil {
			return
		}
		if _, ok := doc.Runtime("kata"); ok {
			return // only files without a kata entry are expected to round-trip
		}
		orig := dockerView(t, data)
		changes, err := doc.SetRuntime("kata", kataRuntime, false)
		if err != nil {
			t.Fatalf("install into %q: %v", data, err)
		}
		if setDefault {
			c, err := doc.SetDefaultRuntime("kata")
			if err != nil {
				t.Fatalf("set default in %q: %v", data, err)
			}
			changes = append(changes, c...)
		}
		out := doc.Bytes()
		checkInstalled(t, orig, dockerView(t, out), setDefault)
		if _, err := Parse(out); err != nil {
			t.Fatalf("install output does not parse again: %v\n%s", err, out)
		}

		res, err := Revert(doc, changes)
		if err != nil {
			t.Fatalf("revert: %v", err)
		}
		if len(res.Kept) != 0 {
			t.Fatalf("revert kept %v on an untouched file", res.Kept)
		}
		if got := doc.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("uninstall(install(x)) != x\nx:   %q\ngot: %q\nmid: %q", data, got, out)
		}
		if res.Unload != nil {
			// A default-runtime of "kata" the user had before stays.
			checkUnload(t, dockerView(t, res.Unload), setDefault && orig[keyDefaultRuntime] != "kata")
		}
	})
}

// checkInstalled: kata is registered and nothing else changed meaning.
func checkInstalled(t *testing.T, orig, got map[string]any, setDefault bool) {
	t.Helper()
	rts, _ := got[keyRuntimes].(map[string]any)
	want, _ := decodeAny(must(marshalCompact(kataRuntime)))
	if !reflect.DeepEqual(rts["kata"], want) {
		t.Fatalf("runtimes.kata = %v, want %v", rts["kata"], want)
	}
	if setDefault && got[keyDefaultRuntime] != "kata" {
		t.Fatalf("default-runtime = %v, want kata", got[keyDefaultRuntime])
	}
	origRts, _ := orig[keyRuntimes].(map[string]any)
	if len(rts) != len(origRts)+1 {
		t.Fatalf("runtimes has %d entries, want %d + kata", len(rts), len(origRts))
	}
	for name, v := range origRts {
		if !reflect.DeepEqual(rts[name], v) {
			t.Fatalf("runtime %q changed: %v -> %v", name, v, rts[name])
		}
	}
	for k, v := range orig {
		if k == keyRuntimes || (k == keyDefaultRuntime && setDefault) {
			continue
		}
		if !reflect.DeepEqual(got[k], v) {
			t.Fatalf("key %q changed: %v -> %v", k, v, got[k])
		}
	}
	for k := range got {
		if _, ok := orig[k]; !ok && k != keyRuntimes && k != keyDefaultRuntime {
			t.Fatalf("unexpected new key %q", k)
		}
	}
}

// checkUnload: the first uninstall write makes dockerd drop kata.
func checkUnload(t *testing.T, m map[string]any, setDefault bool) {
	t.Helper()
	rts, ok := m[keyRuntimes].(map[string]any)
	if !ok {
		t.Fatalf("unload document has no runtimes object: %v", m)
	}
	if _, ok := rts["kata"]; ok {
		t.Fatalf("unload document still has kata: %v", m)
	}
	if d, _ := m[keyDefaultRuntime].(string); setDefault && (d == "" || d == "kata") {
		t.Fatalf("unload document default-runtime = %q", d)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
