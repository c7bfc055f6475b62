// Package hostcgroup puts a VM's host processes (QEMU, virtiofsd) in the container's cgroup and
// applies the container's limits there: the VM sizes what the guest sees, the host cgroup bounds
// what QEMU itself can take from the host, whatever the guest does.
package hostcgroup

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Path is where a container's host cgroup lives.
type Path struct {
	// Dir is the cgroup below each hierarchy's root, e.g. "/docker/<id>" or
	// "/system.slice/docker-<id>.scope".
	Dir string `json:"dir"`
	// Slice and Unit name the systemd scope when the spec uses the systemd driver's
	// "slice:prefix:name" form; both are empty with the cgroupfs driver.
	Slice string `json:"slice,omitempty"`
	Unit  string `json:"unit,omitempty"`
}

// defaultParent holds the cgroups of containers whose spec names none.
const defaultParent = "/kata-deploy"

var (
	// unitPart is what a systemd slice, prefix or name may hold: no '/', nothing systemd would
	// escape or reject.
	unitPart = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,200}$`)
	// dirPart is one component of a cgroupfs path.
	dirPart = regexp.MustCompile(`^[A-Za-z0-9_.:@\-]{1,255}$`)
)

// ParsePath reads an OCI cgroupsPath: "/docker/<id>" (cgroupfs driver; a relative path is taken
// from the hierarchy's root), "system.slice:docker:<id>" (systemd driver), or "" (a cgroup of our
// own under /kata-deploy). Every component is validated: the result becomes a path under
// /sys/fs/cgroup.
func ParsePath(cgroupsPath, id string) (Path, error) {
	if cgroupsPath == "" {
		if !dirPart.MatchString(id) || id == "." || id == ".." {
			return Path{}, fmt.Errorf("invalid container id %q for a cgroup name", id)
		}
		return Path{Dir: defaultParent + "/" + id}, nil
	}
	if !strings.HasPrefix(cgroupsPath, "/") && strings.Count(cgroupsPath, ":") == 2 {
		return parseSystemd(cgroupsPath)
	}
	dir, err := cleanDir(cgroupsPath)
	if err != nil {
		return Path{}, fmt.Errorf("cgroupsPath %q: %w", cgroupsPath, err)
	}
	return Path{Dir: dir}, nil
}

// cleanDir validates a cgroupfs path and makes it absolute. The root cgroup itself is refused: it
// cannot hold limits, and deleting it must never be attempted.
func cleanDir(p string) (string, error) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) == 1 && parts[0] == "" {
		return "", errors.New("names the root cgroup")
	}
	for _, c := range parts {
		if c == "." || c == ".." || !dirPart.MatchString(c) {
			return "", fmt.Errorf("component %q: want letters, digits and '_.:@-', no '.' or '..'", c)
		}
	}
	return "/" + strings.Join(parts, "/"), nil
}

// parseSystemd reads "slice:prefix:name" as runc does: the scope "<prefix>-<name>.scope" in the
// slice (default system.slice).
func parseSystemd(p string) (Path, error) {
	f := strings.Split(p, ":")
	slice, prefix, name := f[0], f[1], f[2]
	if slice == "" {
		slice = "system.slice"
	}
	if !strings.HasSuffix(slice, ".slice") || !unitPart.MatchString(slice) {
		return Path{}, fmt.Errorf("cgroupsPath %q: slice %q is not a systemd slice name", p, slice)
	}
	if !unitPart.MatchString(name) || strings.HasSuffix(name, ".slice") || (prefix != "" && !unitPart.MatchString(prefix)) {
		return Path{}, fmt.Errorf("cgroupsPath %q: want \"slice:prefix:name\" of letters, digits and '_.-'", p)
	}
	unit := name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	sliceDir, err := expandSlice(slice)
	if err != nil {
		return Path{}, fmt.Errorf("cgroupsPath %q: %w", p, err)
	}
	return Path{Dir: path.Join(sliceDir, unit), Slice: slice, Unit: unit}, nil
}

// expandSlice turns a slice name into its cgroup directory: "a-b.slice" lives in
// "/a.slice/a-b.slice", the root slice "-.slice" is "/".
func expandSlice(slice string) (string, error) {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" {
		return "/", nil
	}
	if name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid slice name %q", slice)
	}
	dir, prefix := "", ""
	for _, c := range strings.Split(name, "-") {
		dir += "/" + prefix + c + ".slice"
		prefix += c + "-"
	}
	return dir, nil
}
