package containerdsvc

import (
	"fmt"
	"os"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/pathtrust"
)

// commandEnv is the whole environment of every containerd command kata-deploy runs: nothing of
// the caller's or the daemon's.
var commandEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// trustedBinary returns the binary of the containerd process p, which kata-deploy will run
// (`--version`, `config dump`), or an error when running it would hand root to someone else: any
// user can name a program containerd and serve a socket, so every UID of the process must be
// trusted (root, or the user running kata-deploy), and so must the binary and each directory above
// it (pathtrust).
func trustedBinary(p dockerd.Process) (string, error) {
	owners := pathtrust.Owners()
	for _, uid := range append(p.UIDs[:], p.UID) {
		if !slices.Contains(owners, uid) {
			return "", fmt.Errorf("the containerd process (pid %d) runs as uid %d: kata-deploy trusts only a containerd run by root (or by you), since any user can name a program containerd; point --containerd-address at the system's containerd socket", p.PID, uid)
		}
	}
	if p.Exe == "" {
		return "", fmt.Errorf("the binary of the containerd process (pid %d) cannot be read from /proc: run kata-deploy as root", p.PID)
	}
	if err := pathtrust.Check(p.Exe, owners); err != nil {
		return "", fmt.Errorf("not running the binary of the containerd process (pid %d): %w", p.PID, err)
	}
	if fi, err := os.Stat(p.Exe); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("the binary of the containerd process (pid %d), %s, is gone or not a regular file: restart containerd, then run kata-deploy again", p.PID, p.Exe)
	}
	return p.Exe, nil
}
