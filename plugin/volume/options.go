package volume

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	units "github.com/docker/go-units"
)

// Defaults and bounds of a volume.
const (
	DefaultSize = 1 << 30 // 1 GiB
	DefaultFS   = "ext4"
	maxSize     = 16 << 40
)

// minSize is the smallest file system mkfs makes reliably (xfsprogs refuses under 300 MB).
var minSize = map[string]int64{"ext4": 16 << 20, "xfs": 300 << 20}

// validName is the local driver's rule: the name becomes a directory.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Spec is what a volume is made of.
type Spec struct {
	Size int64  `json:"size"`
	FS   string `json:"fs"`
}

// checkName refuses a name that would not be a plain directory name.
func checkName(name string) error {
	if !validName.MatchString(name) || len(name) > 128 {
		return fmt.Errorf("%q is not a valid volume name: use letters, digits, '_', '.', '-' (2 to 128 characters, starting with a letter or digit)", name)
	}
	return nil
}

// parseOptions reads `-o size=10G -o fs=ext4`; given reports which options were set.
func parseOptions(opts map[string]string) (s Spec, given map[string]bool, err error) {
	s = Spec{Size: DefaultSize, FS: DefaultFS}
	given = map[string]bool{}
	for _, k := range sortedKeys(opts) {
		v := opts[k]
		switch k {
		case "size":
			n, err := units.RAMInBytes(v)
			if err != nil {
				return s, nil, fmt.Errorf("size %q: %w (use a number with a unit, e.g. 10G or 512M)", v, err)
			}
			s.Size = n
		case "fs":
			if _, ok := minSize[v]; !ok {
				return s, nil, fmt.Errorf("fs %q is not supported: use ext4 or xfs", v)
			}
			s.FS = v
		default:
			return s, nil, fmt.Errorf("unknown option %q: the options are size and fs", k)
		}
		given[k] = true
	}
	if s.Size < minSize[s.FS] || s.Size > maxSize {
		return s, nil, fmt.Errorf("size %s is out of range for %s: use %s to %s", units.BytesSize(float64(s.Size)), s.FS,
			units.BytesSize(float64(minSize[s.FS])), units.BytesSize(maxSize))
	}
	return s, given, nil
}

// conflicts names the options given that differ from an existing volume's.
func (s Spec) conflicts(want Spec, given map[string]bool) []string {
	var out []string
	if given["size"] && want.Size != s.Size {
		out = append(out, fmt.Sprintf("size=%s (it has %s)", units.BytesSize(float64(want.Size)), units.BytesSize(float64(s.Size))))
	}
	if given["fs"] && want.FS != s.FS {
		out = append(out, fmt.Sprintf("fs=%s (it has %s)", want.FS, s.FS))
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Clip(keys)
}

func joinConflicts(c []string) string { return strings.Join(c, ", ") }
