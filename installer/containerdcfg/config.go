package containerdcfg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// RuntimeType is the containerd runtime type of a Kata shim v2: containerd runs
// containerd-shim-kata-v2, or runtime_path when set.
const RuntimeType = "io.containerd.kata.v2"

// Plugin IDs of the CRI runtime configuration.
const (
	PluginV2 = "io.containerd.grpc.v1.cri"    // config version 2 (containerd 1.x)
	PluginV3 = "io.containerd.cri.v1.runtime" // config versions 3 and 4 (containerd 2.x)
)

// Runtime is what the drop-in registers.
type Runtime struct {
	// Name is the CRI runtime handler: a RuntimeClass's "handler".
	Name string
	// Path is the shim binary (runtime_path); ConfigPath the runtime configuration handed to it
	// in the runtime options.
	Path       string
	ConfigPath string
}

// PluginID is the plugin holding runtimes in configuration version v.
func PluginID(v int) (string, error) {
	switch v {
	case 2:
		return PluginV2, nil
	case 3, 4:
		return PluginV3, nil
	}
	return "", fmt.Errorf("containerd configuration version %d is not supported (kata-deploy writes versions 2 to 4): convert it with `containerd config migrate`", v)
}

// VersionForDaemon is the configuration version to write for a new main configuration, from the
// major version of containerd.
func VersionForDaemon(major int) int {
	if major >= 2 {
		return 3
	}
	return 2
}

// Decode parses a configuration into a map; errors name the line and column.
func Decode(name string, data []byte) (map[string]any, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("%s: line %d, column %d: %v: fix the file (nothing was changed)", name, row, col, de)
		}
		return nil, fmt.Errorf("%s: %w: fix the file (nothing was changed)", name, err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	return doc, nil
}

// Version is the "version" of a decoded configuration; a file without one is version 1.
func Version(name string, doc map[string]any) (int, error) {
	v, ok := doc["version"]
	if !ok {
		return 1, nil
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("%s: \"version\" is %v, not an integer", name, v)
	}
	return int(n), nil
}

// Imports is the "imports" array of a decoded configuration.
func Imports(name string, doc map[string]any) ([]string, error) {
	v, ok := doc["imports"]
	if !ok {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: \"imports\" is not an array", name)
	}
	var out []string
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s: \"imports\" holds %v, not a path", name, e)
		}
		out = append(out, s)
	}
	return out, nil
}

// Covers reports whether an imports entry of the configuration at configPath loads path: the same
// path, or a glob matching it; relative entries are relative to the configuration's directory,
// as containerd resolves them.
func Covers(configPath, entry, path string) bool {
	entry = filepath.Clean(entry)
	if !filepath.IsAbs(entry) {
		entry = filepath.Join(filepath.Dir(configPath), entry)
	}
	if strings.Contains(entry, "*") {
		ok, err := filepath.Match(entry, path)
		return err == nil && ok
	}
	return entry == filepath.Clean(path)
}

// DropIn is the drop-in file registering r, in configuration version v, with header as leading
// comment lines.
func DropIn(v int, r Runtime, header []string) ([]byte, error) {
	id, err := PluginID(v)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{r.Path, r.ConfigPath} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%q is not an absolute path", p)
		}
	}
	entry := map[string]any{
		"runtime_type": RuntimeType,
		"runtime_path": r.Path,
		// The host's devices are not the guest's: a privileged pod gets none of them in its VM.
		"privileged_without_host_devices": true,
		"options":                         map[string]any{"ConfigPath": r.ConfigPath},
	}
	doc := map[string]any{
		"version": v,
		"plugins": map[string]any{id: map[string]any{"containerd": map[string]any{"runtimes": map[string]any{r.Name: entry}}}},
	}
	var buf bytes.Buffer
	for _, h := range header {
		buf.WriteString("# " + h + "\n")
	}
	if len(header) > 0 {
		buf.WriteString("\n")
	}
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// FindRuntime looks up runtime name in a decoded configuration (a main configuration merged with
// its imports, as `containerd config dump` prints it), under either plugin ID.
func FindRuntime(doc map[string]any, name string) (Runtime, bool) {
	for _, id := range []string{PluginV3, PluginV2} {
		rt, ok := dig(doc, "plugins", id, "containerd", "runtimes", name)
		if !ok {
			continue
		}
		r := Runtime{Name: name}
		r.Path, _ = rt["runtime_path"].(string)
		if typ, _ := rt["runtime_type"].(string); typ != RuntimeType {
			continue
		}
		if opts, ok := rt["options"].(map[string]any); ok {
			r.ConfigPath, _ = opts["ConfigPath"].(string)
		}
		return r, true
	}
	return Runtime{}, false
}

func dig(doc map[string]any, keys ...string) (map[string]any, bool) {
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
