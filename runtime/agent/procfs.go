package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// PidsInNamespace lists the pids (as seen in procDir) of every process whose
// pid namespace link reads like pid's, i.e. the processes of pid's
// container.
func PidsInNamespace(procDir string, pid int) ([]int, error) {
	want, err := os.Readlink(filepath.Join(procDir, strconv.Itoa(pid), "ns", "pid"))
	if err != nil {
		return nil, fmt.Errorf("read pid namespace of %d: %w", pid, err)
	}
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		got, err := os.Readlink(filepath.Join(procDir, e.Name(), "ns", "pid"))
		if err == nil && got == want {
			pids = append(pids, n)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// ParseMeminfo returns memory in use (MemTotal - MemAvailable) and MemTotal,
// in bytes, from /proc/meminfo's content.
func ParseMeminfo(data []byte) (usage, total uint64, err error) {
	var avail uint64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, perr := strconv.ParseUint(fields[0], 10, 64)
		if perr != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		switch key {
		case "MemTotal":
			total, haveTotal = v, true
		case "MemAvailable":
			avail, haveAvail = v, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, fmt.Errorf("meminfo lacks MemTotal or MemAvailable")
	}
	if avail > total {
		avail = total
	}
	return total - avail, total, nil
}

// userHZ is the unit of /proc/stat times on every Linux architecture that
// matters here (USER_HZ is fixed at 100 for the user-space ABI).
const userHZ = 100

// ParseProcStat returns the non-idle CPU time of all CPUs in nanoseconds from
// /proc/stat's first ("cpu") line: everything but idle and iowait; guest
// times are already part of user and nice.
func ParseProcStat(data []byte) (uint64, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat does not start with a cpu line")
	}
	var ticks uint64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest, guest_nice
			continue
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		ticks += v
	}
	return ticks * (1e9 / userHZ), nil
}

// guestStats reads memory and CPU usage of the whole guest.
func guestStats(procDir string) (agentproto.Stats, error) {
	var st agentproto.Stats
	mem, err := os.ReadFile(filepath.Join(procDir, "meminfo"))
	if err != nil {
		return st, fmt.Errorf("read meminfo: %w", err)
	}
	if st.MemoryUsageBytes, st.MemoryLimitBytes, err = ParseMeminfo(mem); err != nil {
		return st, err
	}
	stat, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return st, fmt.Errorf("read /proc/stat: %w", err)
	}
	if st.CPUUsageNs, err = ParseProcStat(stat); err != nil {
		return st, err
	}
	// The guest exists for one container, so any OOM kill in it is the container's.
	if vmstat, err := os.ReadFile(filepath.Join(procDir, "vmstat")); err == nil {
		st.OOMKills = ParseOOMKills(vmstat)
	}
	return st, nil
}

// ParseOOMKills returns the oom_kill counter of /proc/vmstat (0 if absent).
func ParseOOMKills(vmstat []byte) uint64 {
	for _, line := range strings.Split(string(vmstat), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// maxDescribedThreads bounds DescribeStuck's account (a Go process has a handful of threads).
const maxDescribedThreads = 8

// DescribeStuck says where each thread of pid waits, from procDir: its state (R, S, D...), the
// kernel function it sleeps in, and the system call it is in (its number, -1 for none). It is for
// an error about a process that stopped making progress; what cannot be read is left out.
func DescribeStuck(procDir string, pid int) string {
	taskDir := filepath.Join(procDir, strconv.Itoa(pid), "task")
	entries, err := os.ReadDir(taskDir)
	if err != nil {
		return ""
	}
	var parts []string
	for _, e := range entries {
		if len(parts) == maxDescribedThreads {
			parts = append(parts, fmt.Sprintf("%d more threads", len(entries)-maxDescribedThreads))
			break
		}
		parts = append(parts, describeThread(filepath.Join(taskDir, e.Name()), e.Name()))
	}
	return strings.Join(parts, "; ")
}

func describeThread(dir, tid string) string {
	desc := "thread " + tid
	if stat, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
		// The state follows the command's closing parenthesis (the command may hold spaces).
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			desc += " state " + string(stat[i+2])
		}
	}
	if wchan, err := os.ReadFile(filepath.Join(dir, "wchan")); err == nil && len(wchan) > 0 && string(wchan) != "0" {
		desc += " in " + string(wchan)
	}
	if sc, err := os.ReadFile(filepath.Join(dir, "syscall")); err == nil {
		if f := strings.Fields(string(sc)); len(f) > 0 && f[0] != "running" {
			desc += " syscall " + f[0]
		}
	}
	return desc
}
