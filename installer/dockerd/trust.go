package dockerd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kata-deploy/kata-deploy/internal/pathtrust"
)

// ErrUntrusted is in the error of TrustedBinary when the daemon is not to be trusted (as opposed
// to not examinable).
var ErrUntrusted = errors.New("untrusted Docker daemon")

type untrustedError struct{ err error }

func (e untrustedError) Error() string   { return e.err.Error() }
func (e untrustedError) Unwrap() []error { return []error{e.err, ErrUntrusted} }

// TrustedBinary decides whether a process running as euid may rely on the daemon p: send it
// signals, write the daemon.json it names, and run its binary (dockerd --validate). It returns
// the daemon's binary, checked, to run instead of /proc/PID/exe.
//
// A socket's peer is recognised by its process name, which any user chooses (a program called
// dockerd listening anywhere, e.g. at a rootless daemon's documented path), so the name proves
// nothing. The rules:
//   - the daemon runs as root, or as euid itself (every UID of it: real, effective, saved,
//     filesystem); as root that means only a root daemon: a rootless daemon belongs to its user,
//     who runs kata-deploy for it;
//   - its binary, as /proc/PID/exe names it, exists, and it and every directory above it are
//     owned by root (or euid) and not writable by group or others (pathtrust's rule), so that
//     the path keeps naming what was checked when it is run.
func TrustedBinary(p Process, euid int) (string, error) {
	return TrustedDaemonBinary(p, euid, DockerDaemon)
}

// Daemon says, for the messages of TrustedDaemonBinary, what kind of daemon is checked and how
// its user points kata-deploy at the right one.
type Daemon struct {
	Kind string // "Docker daemon"
	// Rootless is the fix for root meeting a daemon of user uid (%[1]d is that uid).
	Rootless string
	// Other is the fix for a user meeting another user's daemon.
	Other string
}

// DockerDaemon describes dockerd.
var DockerDaemon = Daemon{
	Kind:     "Docker daemon",
	Rootless: "for a rootless Docker daemon, run kata-deploy as uid %[1]d; for the system's, point DOCKER_HOST or -H at its socket, unix:///var/run/docker.sock",
	Other:    "point DOCKER_HOST or -H at your own, or the system's",
}

// TrustedDaemonBinary is TrustedBinary for any daemon kata-deploy signals or whose binary it runs
// (dockerd, containerd): the same rules, with d's words in the errors.
func TrustedDaemonBinary(p Process, euid int, d Daemon) (string, error) {
	owners := []int{0}
	if euid != 0 {
		owners = append(owners, euid)
	}
	for _, uid := range p.UIDs {
		if uid != 0 && uid != euid {
			return "", untrustedUser(p, uid, euid, d)
		}
	}
	if p.UID != 0 && p.UID != euid {
		return "", untrustedUser(p, p.UID, euid, d)
	}
	if p.Exe == "" {
		return "", fmt.Errorf("the binary of %s (pid %d) cannot be read from /proc: run kata-deploy as root", describe(p), p.PID)
	}
	if err := pathtrust.Check(p.Exe, owners); err != nil {
		return "", untrustedError{fmt.Errorf("not trusting %s (pid %d): its binary %w", describe(p), p.PID, err)}
	}
	fi, err := os.Stat(p.Exe)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("the binary of %s (pid %d), %s, is gone (replaced by a package upgrade?): restart Docker, then run kata-deploy again", describe(p), p.PID, p.Exe)
	case err != nil:
		return "", fmt.Errorf("the binary of %s (pid %d): %w", describe(p), p.PID, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("the binary of %s (pid %d), %s, is not a regular file", describe(p), p.PID, p.Exe)
	}
	return p.Exe, nil
}

func untrustedUser(p Process, uid, euid int, d Daemon) error {
	if euid == 0 {
		return untrustedError{fmt.Errorf("%s (pid %d) runs as uid %d, not root: as root, kata-deploy trusts only a %s that runs as root, since any user can name a program so (%s)",
			describe(p), p.PID, uid, d.Kind, fmt.Sprintf(d.Rootless, uid))}
	}
	return untrustedError{fmt.Errorf("%s (pid %d) runs as uid %d, neither root nor you (uid %d): kata-deploy does not trust another user's %s (%s)",
		describe(p), p.PID, uid, euid, d.Kind, d.Other)}
}
