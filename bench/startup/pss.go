package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// proc is a host process as /proc shows it.
type proc struct {
	pid, ppid int
	comm      string
	argv      []string
}

// processes lists the host's processes; ones that exit while being read are left out.
func processes() ([]proc, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	var ps []proc
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		p, ok := parseStat(pid, stat)
		if !ok {
			continue
		}
		p.argv = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		ps = append(ps, p)
	}
	return ps, nil
}

// parseStat reads comm and ppid from /proc/<pid>/stat: "pid (comm) state ppid ...", where comm
// may itself hold spaces and parentheses.
func parseStat(pid int, stat []byte) (proc, bool) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 2 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return proc{}, false
	}
	return proc{pid: pid, ppid: ppid, comm: string(stat[open+1 : end])}, true
}

// containerProcs finds a kata container's host processes: its shim (started with -id <id>), and
// the virtiofsd processes below the shim. QEMU's pid is the container's pid (docker inspect).
func containerProcs(ps []proc, id string) (shim []int, virtiofsd []int) {
	for _, p := range ps {
		if len(p.argv) == 0 || filepath.Base(p.argv[0]) != "containerd-shim-kata-v2" {
			continue
		}
		for i := 0; i+1 < len(p.argv); i++ {
			if p.argv[i] == "-id" && p.argv[i+1] == id {
				shim = append(shim, p.pid)
			}
		}
	}
	for _, p := range ps {
		if strings.HasPrefix(p.comm, "virtiofsd") && descends(ps, p.pid, shim) {
			virtiofsd = append(virtiofsd, p.pid)
		}
	}
	return shim, virtiofsd
}

func descends(ps []proc, pid int, ancestors []int) bool {
	parent := map[int]int{}
	for _, p := range ps {
		parent[p.pid] = p.ppid
	}
	for i := 0; i < 64 && pid > 1; i++ {
		pid = parent[pid]
		for _, a := range ancestors {
			if pid == a {
				return true
			}
		}
	}
	return false
}

// pss returns a process's proportional set size in KiB. Not being able to read it is an error:
// a missing figure must never count as 0.
func pss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the PSS of pid %d: %w", pid, err)
	}
	return parsePSS(data)
}

func parsePSS(smapsRollup []byte) (int64, error) {
	for _, line := range strings.Split(string(smapsRollup), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "Pss:" && f[2] == "kB" {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("smaps_rollup: Pss %q: %w", f[1], err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("smaps_rollup has no Pss line")
}
