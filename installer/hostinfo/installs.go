package hostinfo

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Install is an earlier Kata installation found on the host.
type Install struct {
	Kind    string // InstallUpstreamKata or InstallKataDeploy
	Path    string // the prefix as seen by this process (under the root given to FindExistingInstalls)
	Version string // empty when the install does not record one
}

// Kinds of Install.
const (
	InstallUpstreamKata = "upstream-kata" // the Kata Containers static release under /opt/kata
	InstallKataDeploy   = "kata-deploy"   // an earlier kata-deploy install under /opt/kata-deploy
)

// FindExistingInstalls looks under root for upstream Kata in /opt/kata (a kata-runtime or
// containerd-shim-kata-v2 in bin/, version from /opt/kata/VERSION) and for kata-deploy in
// /opt/kata-deploy (a manifest.json, version from its top-level "version" string).
func FindExistingInstalls(root string) []Install {
	var found []Install
	if in, ok := upstreamKata(root); ok {
		found = append(found, in)
	}
	if in, ok := kataDeploy(root); ok {
		found = append(found, in)
	}
	return found
}

func upstreamKata(root string) (Install, bool) {
	const prefix = "opt/kata"
	present := false
	for _, bin := range []string{"bin/kata-runtime", "bin/containerd-shim-kata-v2"} {
		if fi, err := statInRoot(root, prefix+"/"+bin); err == nil && fi.Mode().IsRegular() {
			present = true
			break
		}
	}
	if !present {
		return Install{}, false
	}
	in := Install{Kind: InstallUpstreamKata, Path: filepath.Join(root, prefix)}
	if data, err := readInRoot(root, prefix+"/VERSION"); err == nil {
		in.Version = firstLine(string(data))
	}
	return in, true
}

func kataDeploy(root string) (Install, bool) {
	prefix := strings.TrimPrefix(layout.DefaultPrefix, "/")
	data, err := readInRoot(root, prefix+"/manifest.json")
	if err != nil {
		return Install{}, false
	}
	in := Install{Kind: InstallKataDeploy, Path: filepath.Join(root, prefix)}
	// The manifest format belongs to the installer; only its "version" is read here, leniently:
	// a damaged manifest still means kata-deploy was installed.
	var m struct {
		Version any `json:"version"`
	}
	if json.Unmarshal(data, &m) == nil {
		if v, ok := m.Version.(string); ok {
			in.Version = strings.TrimSpace(v)
		}
	}
	return in, true
}
