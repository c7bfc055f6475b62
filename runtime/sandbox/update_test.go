package sandbox

import (
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestChanges(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	created := specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: i64(200 << 20), Swap: i64(400 << 20)},
		CPU:     &specs.LinuxCPU{Shares: u64(0)},
		Pids:    &specs.LinuxPids{Limit: i64(0)},
	}
	for _, tc := range []struct {
		name string
		upd  *specs.LinuxResources
		want bool
	}{
		{"nothing", &specs.LinuxResources{}, false},
		{"the same limits, zero fields left out (a restart-policy update)", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(200 << 20), Swap: i64(400 << 20)}}, false},
		{"zero pids as absent", &specs.LinuxResources{Pids: &specs.LinuxPids{}}, false},
		{"more memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(300 << 20), Swap: i64(500 << 20)}}, true},
		{"a CPU quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(15000), Period: u64(100000)}}, true},
		{"a pids limit", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(32)}}, true},
		{"a throttle", &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1}}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := changes(&created, tc.upd); got != tc.want {
				t.Errorf("changes = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMergeKeepsDevices(t *testing.T) {
	q := int64(15000)
	cur := specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Access: "rwm"}}, Memory: &specs.LinuxMemory{}}
	next := merge(cur, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q}})
	if len(next.Devices) != 1 || next.Memory == nil || next.CPU == nil || *next.CPU.Quota != q {
		t.Errorf("merged %+v", next)
	}
}

func TestLogNotesIsBounded(t *testing.T) {
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	notes := make([]string, 20)
	for i := range notes {
		notes[i] = strings.Repeat("x", 1000) + "\nforged line"
	}
	logNotes(logf, notes)
	if len(lines) != maxNotes+1 {
		t.Fatalf("%d lines, want %d", len(lines), maxNotes+1)
	}
	for _, l := range lines {
		if len(l) > maxNoteBytes+100 || strings.Contains(l, "\n") {
			t.Errorf("line not bounded or not quoted: %.80q (%d bytes)", l, len(l))
		}
	}
}
