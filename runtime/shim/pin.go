package shim

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// pinToOwnVersion keeps a shim on its own version's configuration during an upgrade.
//
// kata-deploy installs versions side by side, <prefix>/versions/<id>/{bin,share}, with
// <prefix>/current pointing at one, and daemon.json names <prefix>/current/... for both the shim
// and its ConfigPath. A shim started from version A an instant before `upgrade` switches current
// to B would otherwise read B's configuration and boot B's kernel and agent with A's shim. So a
// ConfigPath under <prefix>/current is read from the version directory this shim runs from (exe
// is the shim's resolved executable path). Anything else is returned unchanged.
func pinToOwnVersion(configPath, exe string) string {
	versionDir := filepath.Dir(filepath.Dir(exe)) // <prefix>/versions/<id>
	versions := filepath.Dir(versionDir)
	if filepath.Base(versions) != layout.VersionsDirName {
		return configPath
	}
	rel, err := filepath.Rel(filepath.Join(filepath.Dir(versions), layout.CurrentLinkName), filepath.Clean(configPath))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return configPath
	}
	pinned := filepath.Join(versionDir, rel)
	if _, err := os.Stat(pinned); err != nil {
		return configPath
	}
	return pinned
}
