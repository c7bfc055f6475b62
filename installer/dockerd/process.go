package dockerd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Process is what /proc tells about one process.
type Process struct {
	PID  int
	Comm string // the kernel's name for it (/proc/PID/comm), e.g. "dockerd"
	// Exe is the binary (/proc/PID/exe); empty when the link cannot be read (another user's
	// process without root). A " (deleted)" suffix, left by a package upgrade, is removed.
	Exe  string
	Args []string // the command line, Args[0] included
	// Env is the environment the process started with; nil when /proc/PID/environ cannot be read
	// (another user's process without root), empty when it is really empty.
	Env map[string]string
	UID int // effective UID, as seen from this user namespace
	// UIDs are the real, effective, saved and filesystem UIDs (the Uid line of status).
	UIDs [4]int
	Cwd  string // working directory (/proc/PID/cwd); empty when unreadable
}

// ReadProcess reads procRoot/pid (procRoot is normally "/proc"). The command line and the status
// are required; exe, cwd and environ are read when permissions allow.
func ReadProcess(procRoot string, pid int) (Process, error) {
	if pid <= 0 {
		return Process{}, fmt.Errorf("invalid pid %d", pid)
	}
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	p := Process{PID: pid}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p, fmt.Errorf("process %d does not exist (it may have exited): %w", pid, err)
		}
		return p, fmt.Errorf("reading process %d: %w", pid, err)
	}
	if p.UIDs, err = uids(status); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Join(dir, "status"), err)
	}
	p.UID = p.UIDs[1]
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return p, fmt.Errorf("reading the command line of process %d: %w", pid, err)
	}
	p.Args = splitNUL(cmdline)
	if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		p.Comm = strings.TrimSuffix(string(comm), "\n")
	}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		p.Exe = strings.TrimSuffix(exe, " (deleted)")
	}
	if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil {
		p.Cwd = cwd
	}
	if environ, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil {
		p.Env = map[string]string{}
		for _, kv := range splitNUL(environ) {
			if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
				p.Env[k] = v
			}
		}
	}
	return p, nil
}

// FindDockerdProcesses lists the processes whose comm is "dockerd", by ascending pid. Processes
// that exit during the scan are skipped.
func FindDockerdProcesses(procRoot string) ([]Process, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", procRoot, err)
	}
	var found []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err != nil || strings.TrimSuffix(string(comm), "\n") != "dockerd" {
			continue
		}
		p, err := ReadProcess(procRoot, pid)
		if err != nil {
			continue
		}
		found = append(found, p)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].PID < found[j].PID })
	return found, nil
}

// splitNUL splits NUL-terminated strings, as in /proc/PID/cmdline and environ.
func splitNUL(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// uids reads the "Uid:" line: real, effective, saved and filesystem UID. A line with fewer
// numbers repeats its last one (only the effective UID is required).
func uids(status []byte) ([4]int, error) {
	var ids [4]int
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		for i := range ids {
			v, err := strconv.Atoi(f[min(i, len(f)-1)])
			if err != nil {
				return ids, err
			}
			ids[i] = v
		}
		return ids, nil
	}
	return ids, errors.New("no Uid line: not a /proc status file")
}
