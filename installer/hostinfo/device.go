package hostinfo

import "os"

// Device is a device node the runtime may need: /dev/net/tun (networking), /dev/vhost-net
// (fast virtio-net), /dev/vhost-vsock (vsock channel).
type Device struct {
	Path       string
	Present    bool
	CharDevice bool // false when something else (a regular file, a directory) sits at Path
}

// ProbeDevice looks at path, following symlinks as an open would.
func ProbeDevice(path string) Device {
	d := Device{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return d
	}
	d.Present = true
	d.CharDevice = fi.Mode()&os.ModeCharDevice != 0
	return d
}
