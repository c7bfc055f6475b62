package containerdcfg

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/pelletier/go-toml/v2/unstable"
)

// AddImport returns data with dropIn added to the top-level "imports" of the main configuration
// at configPath, and the edit made; data unchanged and a nil edit when an entry already loads
// dropIn (the same path, or a glob such as containerd 2.x's default "/etc/containerd/conf.d/*.toml").
//
// The edit is textual: the path is appended inside the existing array, or an "imports" line is
// added after "version" (or at the top). The result is checked: it parses, its imports are the old
// ones plus dropIn, and every other value is unchanged.
func AddImport(configPath string, data []byte, dropIn string) ([]byte, *ImportEdit, error) {
	quoted, err := quote(dropIn)
	if err != nil {
		return nil, nil, err
	}
	before, err := Decode(configPath, data)
	if err != nil {
		return nil, nil, err
	}
	imports, err := Imports(configPath, before)
	if err != nil {
		return nil, nil, err
	}
	for _, imp := range imports {
		if Covers(configPath, imp, dropIn) {
			return data, nil, nil
		}
	}
	offset, text, err := insertion(data, quoted)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", configPath, err)
	}
	out := splice(data, offset, text)
	if err := checkAdded(configPath, before, out, append(slices.Clone(imports), dropIn)); err != nil {
		return nil, nil, err
	}
	return out, &ImportEdit{Offset: offset, Text: text, BeforeSHA256: Sum(data), AfterSHA256: Sum(out)}, nil
}

// RemoveImport undoes edit on data, the main configuration as it is now. When the file is as the
// edit left it, the text is cut at its offset: the result is the original, byte for byte. When
// the file was edited since, the text is cut where it is found, once; ok is false when it cannot
// be found (the entry was removed or changed by hand), and data is returned unchanged.
func RemoveImport(configPath string, data []byte, edit ImportEdit) (out []byte, ok bool) {
	text := []byte(edit.Text)
	end := edit.Offset + len(text)
	if Sum(data) == edit.AfterSHA256 && edit.Offset >= 0 && end <= len(data) && bytes.Equal(data[edit.Offset:end], text) {
		return cut(data, edit.Offset, len(text)), true
	}
	if len(text) == 0 || bytes.Count(data, text) != 1 {
		return data, false
	}
	out = cut(data, bytes.Index(data, text), len(text))
	if _, err := Decode(configPath, out); err != nil {
		return data, false
	}
	return out, true
}

// quote renders a path as a TOML basic string; paths that would need escapes are refused.
func quote(path string) (string, error) {
	for _, c := range path {
		if c == '"' || c == '\\' || unicode.IsControl(c) {
			return "", fmt.Errorf("the drop-in path %q holds a quote, a backslash or a control character: choose another", path)
		}
	}
	return `"` + path + `"`, nil
}

func cut(data []byte, offset, n int) []byte {
	return append(bytes.Clone(data[:offset]), data[offset+n:]...)
}

func splice(data []byte, offset int, text string) []byte {
	out := make([]byte, 0, len(data)+len(text))
	out = append(out, data[:offset]...)
	out = append(out, text...)
	return append(out, data[offset:]...)
}

// insertion finds where, and what, to insert to add a quoted path to the top-level imports.
func insertion(data []byte, quoted string) (int, string, error) {
	var p unstable.Parser
	p.Reset(data)
	lineAfterVersion := -1
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable {
			break // top-level keys come before the first table
		}
		if e.Kind != unstable.KeyValue {
			continue
		}
		switch keyOf(e) {
		case "imports":
			return intoArray(data, e, quoted)
		case "version":
			lineAfterVersion = endOfLine(data, int(e.Raw.Offset+e.Raw.Length))
		}
	}
	if err := p.Error(); err != nil {
		return 0, "", err
	}
	line := "imports = [" + quoted + "]\n"
	switch {
	case lineAfterVersion < 0:
		return 0, line, nil
	case lineAfterVersion == len(data) && (len(data) == 0 || data[len(data)-1] != '\n'):
		return len(data), "\n" + strings.TrimSuffix(line, "\n"), nil
	}
	return lineAfterVersion, line, nil
}

// intoArray inserts the quoted path after the last element of the imports array, or inside an
// empty one.
func intoArray(data []byte, kv *unstable.Node, quoted string) (int, string, error) {
	arr := kv.Value()
	if arr.Kind != unstable.Array {
		return 0, "", fmt.Errorf("\"imports\" is not an array")
	}
	var last *unstable.Node
	it := arr.Children()
	for it.Next() {
		last = it.Node()
	}
	if last != nil {
		return int(last.Raw.Offset + last.Raw.Length), ", " + quoted, nil
	}
	closing := int(kv.Raw.Offset+kv.Raw.Length) - 1
	if closing < 0 || closing >= len(data) || data[closing] != ']' {
		return 0, "", fmt.Errorf("cannot find the end of the \"imports\" array")
	}
	return closing, quoted, nil
}

func keyOf(kv *unstable.Node) string {
	var parts []string
	it := kv.Key()
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, ".")
}

// endOfLine is the offset just after the newline ending the line that contains offset (len(data)
// at the end of the file).
func endOfLine(data []byte, offset int) int {
	if i := bytes.IndexByte(data[offset:], '\n'); i >= 0 {
		return offset + i + 1
	}
	return len(data)
}

// checkAdded verifies an edited configuration: it parses, its imports are want, and everything
// else is as before.
func checkAdded(name string, before map[string]any, out []byte, want []string) error {
	after, err := Decode(name, out)
	if err != nil {
		return fmt.Errorf("adding the import would break %s (%v): nothing was changed; add it by hand", name, err)
	}
	got, err := Imports(name, after)
	if err != nil || !slices.Equal(got, want) {
		return fmt.Errorf("adding the import to %s gave imports %v, not %v: nothing was changed; add it by hand", name, got, want)
	}
	b, a := maps(before), maps(after)
	delete(b, "imports")
	delete(a, "imports")
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("adding the import to %s would change other settings: nothing was changed; add it by hand", name)
	}
	return nil
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
