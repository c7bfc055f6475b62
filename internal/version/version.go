// Package version reports what build of kata-deploy is running.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at link time: -ldflags "-X github.com/kata-deploy/kata-deploy/internal/version.Version=v0.1.0
// -X github.com/kata-deploy/kata-deploy/internal/version.Commit=abc123".
var (
	Version = "dev"
	Commit  = ""
)

// Info is the version of this build, as printed by `kata-deploy version`.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the version, falling back to the VCS data Go embeds when the linker flags were not set
// (a plain `go install` or `go build`).
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Commit == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
