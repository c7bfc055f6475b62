package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// traceStep is one step of a container's start or stop.
type traceStep struct {
	Name string
	Took time.Duration
}

var consoleLine = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]\s?(.*)$`)

// traceOne starts one idle container under a debug variant of the runtime and breaks its start
// and stop down: host steps from the processes' start times, guest steps from the timestamps
// of the guest's console, the two joined at the start request (docker start returns right after
// it, so the gap between QEMU's exec and the guest's clock zero is QEMU's setup plus firmware).
func traceOne(ctx context.Context, k *testenv.Kata) ([]traceStep, error) {
	name := runtimeName + "-trace"
	// The agent's debug lines are notices: loglevel=6 puts them on the console, which "quiet"
	// keeps otherwise short (a verbose serial console slows a boot under TCG).
	unregister, err := k.RegisterVariant(name, func(c *config.Config) {
		c.Agent.Debug = true
		c.Hypervisor.KernelParams = strings.TrimSpace(c.Hypervisor.KernelParams + " loglevel=6")
	})
	if err != nil {
		return nil, err
	}
	defer unregister()
	out, err := exec.CommandContext(ctx, "docker", "create", "--runtime="+name, "busybox", "sleep", "1d").Output()
	if err != nil {
		return nil, fmt.Errorf("docker create: %w", exitDetail(err))
	}
	id := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", id).Run()
	t1 := time.Now()
	if out, err := exec.CommandContext(ctx, "docker", "start", id).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker start: %w: %s", err, out)
	}
	t2 := time.Now()
	shimStart, qemuStart, err := hostStarts(ctx, id)
	if err != nil {
		return nil, err
	}
	console, err := os.ReadFile(filepath.Join(k.Config.Runtime.StateDir, id, "vm", "console.log"))
	if err != nil {
		return nil, fmt.Errorf("the guest console: %w", err)
	}
	guest, err := parseConsole(console)
	if err != nil {
		return nil, err
	}
	t3 := time.Now()
	for _, args := range [][]string{{"kill", id}, {"wait", id}} {
		if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("docker %s: %w: %s", args[0], err, out)
		}
	}
	t4 := time.Now()
	guestZero := t2.Add(-guest[len(guest)-1].Took)
	steps := []traceStep{
		{"docker start -> shim running", shimStart.Sub(t1)},
		{"shim: config, rootfs share, netns -> QEMU exec", qemuStart.Sub(shimStart)},
		{"QEMU setup + firmware (estimated)", guestZero.Sub(qemuStart)},
	}
	var prev time.Duration
	for _, g := range guest {
		steps = append(steps, traceStep{g.Name, g.Took - prev})
		prev = g.Took
	}
	return append(steps,
		traceStep{"total: docker start", t2.Sub(t1)},
		traceStep{"teardown: docker kill -> exited", t4.Sub(t3)},
	), nil
}

// parseConsole reads the guest's steps from its console (the agent's debug log, timestamped by
// the kernel): each step ends at a line's timestamp, and the last is the start request.
func parseConsole(console []byte) ([]traceStep, error) {
	var steps []traceStep
	add := func(name string, at time.Duration) { steps = append(steps, traceStep{name, at}) }
	sc := bufio.NewScanner(bytes.NewReader(console))
	for sc.Scan() {
		m := consoleLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		secs, _ := strconv.ParseFloat(m[1], 64)
		at, msg := time.Duration(secs*float64(time.Second)), m[2]
		switch {
		case modulesLine.MatchString(msg):
			sub := modulesLine.FindStringSubmatch(msg)
			took, err := time.ParseDuration(sub[2])
			if err != nil {
				return nil, fmt.Errorf("console: %q: %w", msg, err)
			}
			add("guest kernel boot, until /init runs", at-took)
			add("agent: load "+sub[1]+" modules", at)
		case groupLine.MatchString(msg):
			sub := groupLine.FindStringSubmatch(msg)
			add("until module group "+sub[1]+" is loaded (in the background)", at)
		case strings.Contains(msg, " ready, serving on "):
			add("agent: until its port is open", at)
		case strings.Contains(msg, "host session started"):
			add("until the host connects (handshake)", at)
		case requestLine.MatchString(msg):
			op := requestLine.FindStringSubmatch(msg)[1]
			add("until request "+op, at)
			if op == "start" {
				return steps, nil
			}
		}
	}
	return nil, fmt.Errorf("the guest console has no timestamped start request: is the guest kernel built without CONFIG_PRINTK_TIME, or the agent's debug log off?")
}

var (
	modulesLine = regexp.MustCompile(`^kata-agent: loaded (\d+) of \d+ modules in (\S+)`)
	groupLine   = regexp.MustCompile(`^kata-agent: module group (\w+): loaded \d+ of \d+ modules`)
	requestLine = regexp.MustCompile(`request (\w+) `)
)

// hostStarts returns when the container's shim and QEMU started (10 ms resolution).
func hostStarts(ctx context.Context, id string) (shim, qemu time.Time, err error) {
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", id).Output()
	if err != nil {
		return shim, qemu, fmt.Errorf("docker inspect: %w", exitDetail(err))
	}
	qemuPid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return shim, qemu, fmt.Errorf("container %.12s has no pid: %q", id, out)
	}
	ps, err := processes()
	if err != nil {
		return shim, qemu, err
	}
	shims, _ := containerProcs(ps, id)
	if len(shims) == 0 {
		return shim, qemu, fmt.Errorf("no containerd-shim-kata-v2 process for container %.12s", id)
	}
	if shim, err = processStart(shims[0]); err != nil {
		return shim, qemu, err
	}
	qemu, err = processStart(qemuPid)
	return shim, qemu, err
}

// clockTicks is USER_HZ, which /proc/<pid>/stat counts start times in: 100 on Linux x86-64.
const clockTicks = 100

// processStart converts a process's start time (ticks since boot) to wall-clock time.
func processStart(pid int) (time.Time, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, fmt.Errorf("process %d: %w", pid, err)
	}
	uptime, err := os.ReadFile("/proc/uptime")
	now := time.Now()
	if err != nil {
		return time.Time{}, err
	}
	ticks, err := startTicks(stat)
	if err != nil {
		return time.Time{}, fmt.Errorf("process %d: %w", pid, err)
	}
	f := strings.Fields(string(uptime))
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/uptime: %w", err)
	}
	ago := time.Duration(up*float64(time.Second)) - time.Duration(ticks)*time.Second/clockTicks
	return now.Add(-ago), nil
}

// startTicks reads field 22 (starttime) of /proc/<pid>/stat.
func startTicks(stat []byte) (int64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("unreadable stat")
	}
	f := strings.Fields(string(stat[end+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, fmt.Errorf("short stat")
	}
	return strconv.ParseInt(f[19], 10, 64)
}
