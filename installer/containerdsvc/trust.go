package containerdsvc

import (
	"os"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
)

// commandEnv is the whole environment of every containerd command kata-deploy runs: nothing of
// the caller's or the daemon's.
var commandEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// containerdDaemon words dockerd's trust rule for containerd.
var containerdDaemon = dockerd.Daemon{
	Kind:     "containerd",
	Rootless: "point --containerd-address at the system's containerd socket; a containerd of uid %[1]d is that user's to configure",
	Other:    "point --containerd-address at your own, or the system's",
}

// trustedBinary returns the binary of the containerd process p, which kata-deploy will run
// (`--version`, `config dump`), under the same rule as a dockerd's (dockerd.TrustedDaemonBinary):
// any user can name a program containerd and serve a socket.
func trustedBinary(p dockerd.Process) (string, error) {
	return dockerd.TrustedDaemonBinary(p, os.Geteuid(), containerdDaemon)
}
