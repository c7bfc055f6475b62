package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

// snapshot counts what a kata container creates on the host and must remove again.
type snapshot struct {
	counts map[string]int
	// fds are the descriptors dockerd and containerd hold, by target (a leak names itself).
	fds map[string]int
	// memUsed is MemTotal - MemAvailable, in KiB.
	memUsed int
}

// The counted things, in print order.
var countNames = []string{"qemu", "shim", "virtiofsd", "netns", "links", "qdiscs", "mounts", "state-dirs", "fds"}

func takeSnapshot(e engine) (snapshot, error) {
	s := snapshot{counts: map[string]int{}}
	procs, err := countProcesses()
	if err != nil {
		return s, err
	}
	for k, v := range procs {
		s.counts[k] = v
	}
	readers := []struct {
		name string
		fn   func() (int, error)
	}{
		{"netns", func() (int, error) { return countEntries(e.netnsDir) }},
		{"links", func() (int, error) { return countLines(e.ipCommand("-o", "link", "show")) }},
		{"qdiscs", func() (int, error) { return countLines(e.tcCommand("qdisc", "show")) }},
		{"mounts", func() (int, error) { return countLines(exec.Command("cat", "/proc/1/mountinfo")) }},
		{"state-dirs", func() (int, error) { return countEntries(testenv.StateDir) }},
	}
	for _, r := range readers {
		if s.counts[r.name], err = r.fn(); err != nil {
			return s, fmt.Errorf("counting %s: %w", r.name, err)
		}
	}
	if s.fds, err = e.daemonDescriptors(); err != nil {
		return s, err
	}
	for _, n := range s.fds {
		s.counts["fds"] += n
	}
	if s.memUsed, err = memUsed(); err != nil {
		return s, err
	}
	return s, nil
}

func (s snapshot) String() string {
	var b strings.Builder
	for _, n := range countNames {
		fmt.Fprintf(&b, "%s=%d ", n, s.counts[n])
	}
	fmt.Fprintf(&b, "mem-used=%d MiB", s.memUsed/1024)
	return b.String()
}

// leftoversSince lists what grew since before: any count, or memory in use by more than slack
// (a fraction of what was in use before).
func (s snapshot) leftoversSince(before snapshot, slack float64) []string {
	var out []string
	for _, n := range countNames {
		if n == "fds" {
			continue
		}
		if s.counts[n] > before.counts[n] {
			out = append(out, fmt.Sprintf("%s %d (was %d)", n, s.counts[n], before.counts[n]))
		}
	}
	out = append(out, grownDescriptors(before.fds, s.fds)...)
	if limit := before.memUsed + int(float64(before.memUsed)*slack); s.memUsed > limit {
		out = append(out, fmt.Sprintf("host memory in use %d MiB (was %d MiB, limit %d MiB)", s.memUsed/1024, before.memUsed/1024, limit/1024))
	}
	return out
}

// processesOnly is the part of a snapshot that a fault must leave as it found it: a restarted
// daemon has other descriptors and memory by design.
func (s snapshot) processesOnly() snapshot {
	c := snapshot{counts: map[string]int{}, fds: map[string]int{}}
	for _, n := range []string{"qemu", "shim", "virtiofsd", "netns", "mounts", "state-dirs"} {
		c.counts[n] = s.counts[n]
	}
	return c
}

// socketSlack is how many more sockets a daemon may hold after the run than before: dockerd's
// and containerd's connection pools (gRPC, HTTP keep-alive) grow and shrink on their own, by a
// few either way even with runc; a descriptor leaked per container exceeds it within a few dozen.
const socketSlack = 8

func grownDescriptors(before, after map[string]int) []string {
	var out []string
	for target, n := range after {
		allowed := before[target]
		if strings.HasSuffix(target, " socket") {
			allowed += socketSlack
		}
		if n > allowed {
			out = append(out, fmt.Sprintf("daemon descriptor %q x%d (was %d)", target, n, before[target]))
		}
	}
	sort.Strings(out)
	return out
}

// countProcesses counts QEMU, kata shims and virtiofsd by executable name.
func countProcesses() (map[string]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	c := map[string]int{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a kernel thread
		}
		if kind := processKind(cmdline); kind != "" {
			c[kind]++
		}
	}
	return c, nil
}

func processKind(cmdline []byte) string {
	argv0 := filepath.Base(string(bytes.SplitN(cmdline, []byte{0}, 2)[0]))
	switch {
	case strings.HasPrefix(argv0, "qemu-system-"):
		return "qemu"
	case argv0 == "containerd-shim-kata-v2":
		return "shim"
	case argv0 == "virtiofsd":
		return "virtiofsd"
	}
	return ""
}

func countEntries(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, nil
	}
	return len(entries), err
}

func countLines(cmd *exec.Cmd) (int, error) {
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n, sc.Err()
}

func memUsed() (int, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	fields := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, err := strconv.Atoi(f[1])
			if err == nil {
				fields[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	}
	total, okT := fields["MemTotal"]
	avail, okA := fields["MemAvailable"]
	if !okT || !okA {
		return 0, fmt.Errorf("/proc/meminfo has no MemTotal or MemAvailable")
	}
	return total - avail, nil
}
