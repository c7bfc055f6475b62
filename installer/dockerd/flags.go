package dockerd

import (
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultPIDFile is dockerd's pid file when it runs as root and is not told otherwise.
const DefaultPIDFile = "/var/run/docker.pid"

// Flags are the dockerd command-line options that matter for registering a runtime.
type Flags struct {
	ConfigFile string
	// ConfigFileSet tells `--config-file ""` (dockerd then reads no file at all) from no flag.
	ConfigFileSet  bool
	PIDFile        string
	DataRoot       string
	ExecRoot       string
	Hosts          []string // every -H/--host, in order
	Rootless       bool
	DefaultRuntime string
	Runtimes       []string // every --add-runtime value as given, "name=path"
}

// RuntimeNames returns the names registered with --add-runtime.
func (f Flags) RuntimeNames() []string {
	var names []string
	for _, r := range f.Runtimes {
		name, _, _ := strings.Cut(r, "=")
		names = append(names, name)
	}
	return names
}

// EffectivePIDFile is --pidfile, else dockerd's default for a root daemon. A daemon.json
// "pidfile" key overrides the default too, and a daemon under RootlessKit defaults to
// $XDG_RUNTIME_DIR/docker.pid: use PIDFileOf when the process is known.
func (f Flags) EffectivePIDFile() string {
	if f.PIDFile != "" {
		return f.PIDFile
	}
	return DefaultPIDFile
}

// PIDFileOf is the pid file of a running dockerd from its command line and environment, with the
// same caveat about daemon.json as EffectivePIDFile. It is empty when a rootless daemon's
// XDG_RUNTIME_DIR cannot be read.
func PIDFileOf(p Process) string {
	f := ParseDaemonFlags(p.Args)
	if f.PIDFile != "" {
		return f.PIDFile
	}
	if rootless, _ := rootlessKit(p); rootless {
		if dir := p.Env["XDG_RUNTIME_DIR"]; dir != "" {
			return filepath.Join(dir, "docker.pid")
		}
		return ""
	}
	return DefaultPIDFile
}

// Long options that take a value, for the ones this package reads plus the short forms dockerd
// defines. Unknown options are skipped; since dockerd takes no positional arguments, a stray
// word after an unknown option is its value and is skipped too.
var (
	shortValueFlags = map[byte]string{
		'H': "host", 'p': "pidfile", 'g': "graph", 'G': "group", 's': "storage-driver",
		'b': "bridge", 'l': "log-level",
	}
	shortBoolFlags = map[byte]bool{'D': true, 'v': true, 'r': true, 'd': true}
	valueFlags     = map[string]bool{
		"config-file": true, "pidfile": true, "data-root": true, "graph": true, "exec-root": true,
		"host": true, "default-runtime": true, "add-runtime": true,
	}
)

// ParseDaemonFlags reads a dockerd command line (Args[0] may be included) the way pflag would:
// "--flag value", "--flag=value", "-H value", "-Hvalue", "-H=value", combined short booleans
// ("-DH fd://"), repeated -H. A later occurrence of a single-valued flag wins, as in pflag.
func ParseDaemonFlags(args []string) Flags {
	var f Flags
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return f
		case strings.HasPrefix(arg, "--"):
			name, value, hasValue := strings.Cut(arg[2:], "=")
			if name == "rootless" {
				f.Rootless = !hasValue || parseBool(value)
				continue
			}
			if !valueFlags[name] {
				continue
			}
			if !hasValue {
				if i+1 >= len(args) {
					continue
				}
				i++
				value = args[i]
			}
			f.set(name, value)
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			i = f.parseShort(args, i)
		}
	}
	return f
}

// parseShort handles one "-abc" group and returns the index of the last argument it used.
func (f *Flags) parseShort(args []string, i int) int {
	group := args[i][1:]
	for j := 0; j < len(group); j++ {
		name, takesValue := shortValueFlags[group[j]]
		if !takesValue {
			if !shortBoolFlags[group[j]] {
				return i // unknown shorthand: pflag would fail; skip the group
			}
			continue
		}
		value := strings.TrimPrefix(group[j+1:], "=")
		if j+1 == len(group) {
			if i+1 >= len(args) {
				return i
			}
			i++
			value = args[i]
		}
		f.set(name, value)
		return i
	}
	return i
}

func (f *Flags) set(name, value string) {
	switch name {
	case "config-file":
		f.ConfigFile, f.ConfigFileSet = value, true
	case "pidfile":
		f.PIDFile = value
	case "data-root", "graph":
		f.DataRoot = value
	case "exec-root":
		f.ExecRoot = value
	case "host":
		f.Hosts = append(f.Hosts, value)
	case "default-runtime":
		f.DefaultRuntime = value
	case "add-runtime":
		f.Runtimes = append(f.Runtimes, value)
	}
}

func parseBool(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}
