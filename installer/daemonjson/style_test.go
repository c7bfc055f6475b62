package daemonjson

import "testing"

func TestDetectStyle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want style
	}{
		{"", style{pretty: true, nl: "\n", unit: "  ", colon: ": ", comma: " "}},
		{"{}", style{pretty: true, nl: "\n", unit: "  ", colon: ": ", comma: " "}},
		{"{\r\n}\r\n", style{pretty: true, nl: "\r\n", unit: "  ", colon: ": ", comma: " "}},
		{"{\n\t\"a\": 1\n}", style{pretty: true, nl: "\n", unit: "\t", colon: ": ", comma: " "}},
		{"{\n    \"a\" : [1,2]\n}", style{pretty: true, nl: "\n", unit: "    ", colon: " : ", comma: ""}},
		{"{\"a\":1,\"b\":2}", style{pretty: false, nl: "\n", unit: "  ", colon: ":", comma: ""}},
		{"{\"a\": 1, \"b\": 2}\n", style{pretty: false, nl: "\n", unit: "  ", colon: ": ", comma: " "}},
		// Array alignment is not indentation; the nested object's is.
		{"{\"a\": [\n         1],\n \"b\": {\n   \"c\": 1}}", style{pretty: true, nl: "\n", unit: " ", colon: ": ", comma: " "}},
		// Indentation is relative to the line holding the container.
		{"  {\n    \"a\": 1}", style{pretty: true, nl: "\n", unit: "  ", colon: ": ", comma: " "}},
	} {
		d := parse(t, tc.in)
		if d.style != tc.want {
			t.Errorf("%q: style %+v, want %+v", tc.in, d.style, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	raw := []byte(`{"a":[1,{}],"b":{"c":"x,:{}[]\"\\"},"d":[]}`)
	pretty := style{pretty: true, nl: "\r\n", unit: "\t", colon: ": "}
	want := "{\r\n>\t\"a\": [\r\n>\t\t1,\r\n>\t\t{}\r\n>\t],\r\n>\t\"b\": {\r\n>\t\t\"c\": \"x,:{}[]\\\"\\\\\"\r\n>\t},\r\n>\t\"d\": []\r\n>}"
	if got := string(pretty.format(raw, ">", true)); got != want {
		t.Errorf("pretty:\n%q\nwant\n%q", got, want)
	}
	compact := style{colon: ": ", comma: " "}
	want = `{"a": [1, {}], "b": {"c": "x,:{}[]\"\\"}, "d": []}`
	if got := string(compact.format(raw, "", false)); got != want {
		t.Errorf("compact:\n%s\nwant\n%s", got, want)
	}
}

// An object written on one line inside an indented file gets the new member
// on that line too.
func TestInsertIntoInlineObject(t *testing.T) {
	d := parse(t, "{\n  \"runtimes\": {\"runsc\": {\"path\": \"/r\"}}\n}\n")
	if _, err := d.SetRuntime("kata", Runtime{RuntimeType: "io.containerd.kata.v2"}, false); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"runtimes\": {\"runsc\": {\"path\": \"/r\"}, \"kata\": {\"runtimeType\": \"io.containerd.kata.v2\"}}\n}\n"
	if got := string(d.Bytes()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}
