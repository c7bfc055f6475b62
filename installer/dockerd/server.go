package dockerd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Server is the process found behind a Docker socket.
type Server struct {
	Process Process
	// ListenerPID is what SO_PEERCRED reported: the process that called listen(). Under systemd
	// socket activation that is systemd, not dockerd, and must never receive dockerd's SIGHUP.
	ListenerPID int
	// How says how Process was identified, for the report.
	How string
}

// FindServer names the dockerd (or Docker Desktop backend) serving socketPath. The socket's peer
// credentials name it directly when dockerd created the socket. Under socket activation they name
// systemd instead; then the dockerd holding the listening socket among its open files is the
// server (this needs root to read other processes' fd tables). When that cannot be seen and
// exactly one dockerd runs beside a systemd listener, that dockerd is taken, and How says so.
func FindServer(procRoot, socketPath string) (Server, error) {
	pid, err := PeerPID(socketPath)
	if err != nil {
		return Server{}, err
	}
	s := Server{ListenerPID: pid}
	listener, err := ReadProcess(procRoot, pid)
	if err != nil {
		return s, fmt.Errorf("the process listening on %s: %w", socketPath, err)
	}
	if listener.Comm == "dockerd" || isDesktop(listener) {
		s.Process, s.How = listener, "it listens on "+socketPath+" itself (socket peer credentials)"
		return s, nil
	}
	candidates, err := FindDockerdProcesses(procRoot)
	if err != nil {
		return s, err
	}
	inodes := listeningInodes(procRoot, pid, socketPath)
	for _, c := range candidates {
		if holdsSocket(procRoot, c.PID, inodes) {
			s.Process = c
			s.How = fmt.Sprintf("it holds the listening socket %s, which %s (pid %d) created", socketPath, describe(listener), pid)
			return s, nil
		}
	}
	if isSocketActivator(listener) && len(candidates) == 1 {
		s.Process = candidates[0]
		s.How = fmt.Sprintf("the socket was created by %s (pid %d) and this is the only dockerd running; its open files could not be matched (run as root to confirm)", describe(listener), pid)
		return s, nil
	}
	switch {
	case !isSocketActivator(listener):
		return s, fmt.Errorf("%s is served by %s (pid %d), not by dockerd: kata-deploy works with Docker Engine only (is this Podman or a socket proxy? point DOCKER_HOST at dockerd's own socket)",
			socketPath, describe(listener), pid)
	case len(candidates) == 0:
		return s, fmt.Errorf("%s belongs to a %s socket unit but no dockerd runs (connecting may just have started it): try again in a few seconds",
			socketPath, describe(listener))
	}
	return s, fmt.Errorf("%s was created by %s (pid %d) and %d dockerd processes run, none of them visibly holding it: run kata-deploy as root so their open files can be read",
		socketPath, describe(listener), pid, len(candidates))
}

func isSocketActivator(p Process) bool { return p.PID == 1 || p.Comm == "systemd" }

func describe(p Process) string {
	if p.Comm != "" {
		return p.Comm
	}
	return "process " + strconv.Itoa(p.PID)
}

// listeningInodes returns the socket inodes of listening unix sockets bound to socketPath, read
// from the listener's own network namespace view (procRoot/PID/net/unix), falling back to
// procRoot/net/unix. Both the path as given and its symlink-resolved form (/var/run -> /run) match.
func listeningInodes(procRoot string, pid int, socketPath string) map[string]bool {
	want := map[string]bool{filepath.Clean(socketPath): true}
	if resolved, err := filepath.EvalSymlinks(socketPath); err == nil {
		want[resolved] = true
	}
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "net", "unix"))
	if err != nil {
		if f, err = os.Open(filepath.Join(procRoot, "net", "unix")); err != nil {
			return nil
		}
	}
	defer f.Close()
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !isListening(fields[3]) {
			continue
		}
		path := strings.Join(fields[7:], " ")
		if want[path] || (filepath.Base(path) == filepath.Base(socketPath) && want[resolve(path)]) {
			inodes[fields[6]] = true
		}
	}
	return inodes
}

// isListening tests __SO_ACCEPTCON (0x10000) in the Flags column of /proc/net/unix.
func isListening(flags string) bool {
	v, err := strconv.ParseUint(flags, 16, 32)
	return err == nil && v&0x10000 != 0
}

func resolve(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

// holdsSocket reports whether pid has one of the socket inodes open.
func holdsSocket(procRoot string, pid int, inodes map[string]bool) bool {
	if len(inodes) == 0 {
		return false
	}
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true
		}
	}
	return false
}
