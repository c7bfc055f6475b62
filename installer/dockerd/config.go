package dockerd

import (
	"path/filepath"
	"regexp"
	"strings"
)

// Sources of a ConfigLocation.
const (
	SourceFlag     = "flag"     // --config-file on dockerd's command line
	SourceDefault  = "default"  // /etc/docker/daemon.json
	SourceRootless = "rootless" // $XDG_CONFIG_HOME/docker/daemon.json of a RootlessKit daemon
	SourceSnap     = "snap"     // the Docker snap's $SNAP_DATA/config/daemon.json
	SourceDesktop  = "desktop"  // Docker Desktop: the engine runs in Desktop's own VM
)

// DefaultConfigFile is where a root dockerd reads its configuration unless told otherwise.
const DefaultConfigFile = "/etc/docker/daemon.json"

// SnapConfigFile is the Docker snap's daemon.json through the "current" revision link, which stays
// right across snap refreshes (a refresh copies the file into the new revision).
const SnapConfigFile = "/var/snap/docker/current/config/daemon.json"

// ConfigLocation says which daemon.json a dockerd reads.
type ConfigLocation struct {
	// Path is absolute, or empty when it cannot be known (Why says why).
	Path   string
	Source string // one of the Source* constants
	// ReadOnly means kata-deploy must not write Path and should print the stanza instead.
	ReadOnly bool
	// Why explains the choice in a sentence for the report.
	Why string
}

// snapRevisionConfig matches the path the snap passes itself: /var/snap/docker/<revision>/config/daemon.json.
var snapRevisionConfig = regexp.MustCompile(`^/var/snap/docker/[^/]+/config/daemon\.json$`)

// ResolveConfigFile says which daemon.json p (a dockerd, or Docker Desktop's backend) reads, by
// dockerd's own rules: --config-file wins; otherwise a daemon under RootlessKit reads
// $XDG_CONFIG_HOME/docker/daemon.json (or $HOME/.config/docker/daemon.json) and every other reads
// /etc/docker/daemon.json. Snap, Docker Desktop and Nix-store paths are recognised on top. It
// only looks at p: relative paths are resolved against p.Cwd.
func ResolveConfigFile(p Process) ConfigLocation {
	if isDesktop(p) {
		return desktopLocation(p)
	}
	f := ParseDaemonFlags(p.Args)
	var loc ConfigLocation
	switch {
	case f.ConfigFileSet && f.ConfigFile == "":
		loc = ConfigLocation{Source: SourceFlag, ReadOnly: true,
			Why: `dockerd was started with an empty --config-file and reads no daemon.json: register the runtime with --add-runtime on its command line instead`}
	case isSnap(p) && (!f.ConfigFileSet || snapRevisionConfig.MatchString(f.ConfigFile)):
		loc = ConfigLocation{Path: SnapConfigFile, Source: SourceSnap,
			Why: "dockerd runs from the Docker snap, which keeps its daemon.json in $SNAP_DATA/config"}
		if f.ConfigFileSet {
			loc.Why += " (--config-file " + f.ConfigFile + "; \"current\" names the same revision and survives snap refreshes)"
		}
	case f.ConfigFileSet:
		loc = flagLocation(p, f.ConfigFile)
	default:
		loc = implicitLocation(p, f)
	}
	if strings.HasPrefix(loc.Path, "/nix/store/") {
		loc.ReadOnly = true
		loc.Why += "; the file is in the read-only Nix store (NixOS): add the runtime to virtualisation.docker.daemon.settings in configuration.nix, kata-deploy prints the stanza"
	}
	return loc
}

func flagLocation(p Process, path string) ConfigLocation {
	loc := ConfigLocation{Path: path, Source: SourceFlag, Why: "dockerd was started with --config-file " + path}
	if filepath.IsAbs(path) {
		loc.Path = filepath.Clean(path)
		return loc
	}
	if p.Cwd == "" {
		loc.Path = ""
		loc.Why += ", a relative path, and dockerd's working directory cannot be read: run kata-deploy as root"
		return loc
	}
	loc.Path = filepath.Join(p.Cwd, path)
	loc.Why += ", relative to its working directory " + p.Cwd
	return loc
}

// implicitLocation is dockerd's default when no --config-file is given.
func implicitLocation(p Process, f Flags) ConfigLocation {
	rootless, why := rootlessKit(p)
	if !rootless {
		loc := ConfigLocation{Path: DefaultConfigFile, Source: SourceDefault, Why: "dockerd's default (no --config-file on its command line)"}
		if f.Rootless || p.UID != 0 {
			loc.Why += "; without RootlessKit dockerd keeps the system-wide path even when rootless or not root"
		}
		return loc
	}
	loc := ConfigLocation{Source: SourceRootless}
	switch {
	case p.Env["XDG_CONFIG_HOME"] != "":
		loc.Path = filepath.Join(p.Env["XDG_CONFIG_HOME"], "docker", "daemon.json")
		loc.Why = why + ", so it reads $XDG_CONFIG_HOME/docker/daemon.json"
	case p.Env["HOME"] != "":
		loc.Path = filepath.Join(p.Env["HOME"], ".config", "docker", "daemon.json")
		loc.Why = why + ", so it reads $HOME/.config/docker/daemon.json"
	default:
		loc.Why = why + ", but its environment (XDG_CONFIG_HOME, HOME) cannot be read: run kata-deploy as the user who runs it"
	}
	return loc
}

// rootlessKit reports whether p runs under RootlessKit, which is what makes dockerd honour the XDG
// directories (dockerd checks ROOTLESSKIT_STATE_DIR; --rootless alone does not). When the
// environment cannot be read, a non-root UID or --rootless is taken as the sign.
func rootlessKit(p Process) (bool, string) {
	if p.Env != nil {
		if p.Env["ROOTLESSKIT_STATE_DIR"] != "" {
			return true, "dockerd runs under RootlessKit (ROOTLESSKIT_STATE_DIR is set)"
		}
		for k := range p.Env {
			if strings.HasPrefix(k, "DOCKERD_ROOTLESS_ROOTLESSKIT_") {
				return true, "dockerd was started by dockerd-rootless.sh (" + k + " is set)"
			}
		}
		return false, ""
	}
	if p.UID != 0 {
		return true, "dockerd runs as a non-root user (rootless mode)"
	}
	if ParseDaemonFlags(p.Args).Rootless {
		return true, "dockerd runs with --rootless"
	}
	return false, ""
}

func isSnap(p Process) bool {
	return strings.HasPrefix(p.Exe, "/snap/") || (len(p.Args) > 0 && strings.HasPrefix(p.Args[0], "/snap/")) ||
		p.Env["SNAP_NAME"] == "docker"
}

// isDesktop recognises Docker Desktop's backend (com.docker.backend, installed under
// /opt/docker-desktop on Linux), which serves ~/.docker/desktop/docker.sock for an engine that runs
// inside Desktop's VM.
func isDesktop(p Process) bool {
	for _, s := range []string{p.Exe, p.Comm, argv0(p)} {
		if strings.Contains(s, "com.docker.") || strings.HasPrefix(s, "/opt/docker-desktop/") {
			return true
		}
	}
	return false
}

func desktopLocation(p Process) ConfigLocation {
	loc := ConfigLocation{Source: SourceDesktop, ReadOnly: true,
		Why: "Docker Desktop runs the engine inside its own VM, where host binaries are not visible; its engine settings change only through Settings > Docker Engine, and kata-deploy cannot install a runtime there"}
	if home := p.Env["HOME"]; home != "" {
		loc.Path = filepath.Join(home, ".docker", "daemon.json")
	}
	return loc
}

func argv0(p Process) string {
	if len(p.Args) == 0 {
		return ""
	}
	return p.Args[0]
}
