package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machine describes where the figures were measured.
type machine struct {
	Date          time.Time
	CPU           string
	Cores         int
	MemoryKiB     int64
	HostKernel    string
	Accel, Reason string // the accelerator the runtime uses, and why
	QEMU          string // its version line
	Docker        string
	GuestKernel   string
	VCPUs         int
	GuestMiB      int
}

func describeMachine(ctx context.Context, qemu, guestKernel, acc, why string, vcpus, memMiB int) machine {
	m := machine{
		Date: time.Now().UTC(), Cores: runtime.NumCPU(), Accel: acc, Reason: why,
		GuestKernel: guestKernel, VCPUs: vcpus, GuestMiB: memMiB,
		CPU:       procField("/proc/cpuinfo", "model name", ":"),
		QEMU:      firstLine(ctx, qemu, "--version"),
		Docker:    firstLine(ctx, "docker", "version", "--format", "{{.Server.Version}}"),
		MemoryKiB: memTotal(),
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.HostKernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// procField returns the value of the first "key<sep> value" line of a /proc file.
func procField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), sep); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() int64 {
	f := strings.Fields(procField("/proc/meminfo", "MemTotal", ":"))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(line))
}
