package main

import (
	"reflect"
	"testing"
	"time"
)

func TestLeftoversSince(t *testing.T) {
	base := snapshot{
		counts:  map[string]int{"qemu": 1, "mounts": 40},
		fds:     map[string]int{"dockerd socket": 10},
		memUsed: 1000 * 1024,
	}
	tests := []struct {
		name  string
		after snapshot
		slack float64
		want  []string
	}{
		{"same", base, 0.05, nil},
		{"fewer is fine", snapshot{counts: map[string]int{"qemu": 0, "mounts": 39}, fds: map[string]int{}, memUsed: 900 * 1024}, 0.05, nil},
		{"a qemu more", snapshot{counts: map[string]int{"qemu": 2, "mounts": 40}, fds: base.fds, memUsed: base.memUsed}, 0.05,
			[]string{"qemu 2 (was 1)"}},
		{"pooled sockets", snapshot{counts: base.counts, fds: map[string]int{"dockerd socket": 10 + socketSlack}, memUsed: base.memUsed}, 0.05, nil},
		{"sockets past the pools", snapshot{counts: base.counts, fds: map[string]int{"dockerd socket": 11 + socketSlack}, memUsed: base.memUsed}, 0.05,
			[]string{`daemon descriptor "dockerd socket" x19 (was 10)`}},
		{"a fifo more", snapshot{counts: base.counts, fds: map[string]int{"dockerd socket": 10, "dockerd /run/x/init-stdout": 1}, memUsed: base.memUsed}, 0.05,
			[]string{`daemon descriptor "dockerd /run/x/init-stdout" x1 (was 0)`}},
		{"memory within slack", snapshot{counts: base.counts, fds: base.fds, memUsed: 1040 * 1024}, 0.05, nil},
		{"memory over slack", snapshot{counts: base.counts, fds: base.fds, memUsed: 1100 * 1024}, 0.05,
			[]string{"host memory in use 1100 MiB (was 1000 MiB, limit 1050 MiB)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.after.leftoversSince(base, tc.slack); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("leftoversSince = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProcessKind(t *testing.T) {
	tests := map[string]string{
		"/usr/bin/qemu-system-x86_64\x00-name\x00kata-1":                 "qemu",
		"/opt/kata-deploy/bin/containerd-shim-kata-v2\x00-id\x00abc\x00": "shim",
		"/usr/libexec/virtiofsd\x00--socket-path=x":                      "virtiofsd",
		"/usr/bin/containerd-shim-runc-v2\x00-id\x00abc":                 "",
		"sleep\x00100": "",
	}
	for cmdline, want := range tests {
		if got := processKind([]byte(cmdline)); got != want {
			t.Errorf("processKind(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

func TestDescriptorKind(t *testing.T) {
	tests := map[string]string{
		"socket:[12345]":         "socket",
		"pipe:[9]":               "pipe",
		"anon_inode:[eventpoll]": "anon_inode:[eventpoll]",
		"/var/lib/docker/x.log":  "/var/lib/docker/x.log",
	}
	for target, want := range tests {
		if got := descriptorKind(target); got != want {
			t.Errorf("descriptorKind(%q) = %q, want %q", target, got, want)
		}
	}
}

func TestHasArg(t *testing.T) {
	args := []string{"containerd-shim-kata-v2", "-namespace", "moby", "-id", "abc123", "-address", "/run/c.sock"}
	if !hasArg(args, "abc123") || hasArg(args, "abc") {
		t.Fatal("hasArg must match a whole argument")
	}
	if !hasArg([]string{"qemu", "-name", "kata-abc"}, "kata-abc") || !hasArg([]string{"x", "guest=kata-abc"}, "kata-abc") {
		t.Fatal("hasArg must match a -name value")
	}
}

func TestSettleTime(t *testing.T) {
	if got := settleTime([]string{`daemon descriptor "dockerd socket" x19 (was 10)`}); got != 150*time.Second {
		t.Errorf("sockets only: %v", got)
	}
	if got := settleTime([]string{`daemon descriptor "dockerd socket" x19 (was 10)`, "qemu 1 (was 0)"}); got != 30*time.Second {
		t.Errorf("a process left: %v", got)
	}
	if got := settleTime([]string{`daemon descriptor "dockerd /run/x/fifo" x1 (was 0)`}); got != 30*time.Second {
		t.Errorf("a fifo left: %v", got)
	}
}
