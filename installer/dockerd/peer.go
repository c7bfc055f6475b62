package dockerd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dialTimeout bounds the connect; a unix connect only waits when the listen backlog is full.
const dialTimeout = 5 * time.Second

// PeerPID connects to the unix socket and returns the pid that SO_PEERCRED reports for it: the
// process that called listen() on it. That is dockerd itself, except under systemd socket
// activation (-H fd://), where it is systemd; FindServer handles that case. Nothing is sent.
func PeerPID(socketPath string) (int, error) {
	conn, err := net.DialTimeout("unix", socketPath, dialTimeout)
	if err != nil {
		return 0, dialError(socketPath, err)
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading peer credentials of %s: %w", socketPath, err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("reading peer credentials of %s: %w", socketPath, err)
	}
	if credErr != nil {
		return 0, fmt.Errorf("reading peer credentials of %s (SO_PEERCRED): %w", socketPath, credErr)
	}
	if cred.Pid == 0 {
		return 0, fmt.Errorf("the process serving %s is in another PID namespace and invisible from here: run kata-deploy on the host, or in a container started with --pid=host", socketPath)
	}
	return int(cred.Pid), nil
}

func dialError(socketPath string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no socket at %s: is Docker running? (set DOCKER_HOST if it listens elsewhere): %w", socketPath, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("not allowed to connect to %s: run as root or as a member of the docker group: %w", socketPath, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing listens on %s (a stale socket file): start Docker: %w", socketPath, err)
	}
	return fmt.Errorf("connecting to %s: %w", socketPath, err)
}
