package hypervisor

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kata-containers/govmm/qemu"
)

// Each test shows the govmm defect (so that an update that fixes it is
// noticed) and that the workaround avoids it.

func minimalQEMU() qemu.Config {
	return qemu.Config{Name: "t", Machine: qemu.Machine{Type: "q35"}, Memory: qemu.Memory{Size: "256M"}}
}

func TestNoRealtimeArg(t *testing.T) {
	q := minimalQEMU()
	if args := govmmArgs(t, q); !slices.Contains(args, "-realtime") {
		t.Errorf("govmm no longer emits -realtime without Mlock (%q): noRealtimeArg can go", args)
	}
	noRealtimeArg(&q.Knobs)
	if args := govmmArgs(t, q); slices.Contains(args, "-realtime") || slices.ContainsFunc(args, func(a string) bool { return a == "mlock=off" || a == "mlock=on" }) {
		t.Errorf("-realtime or mlock still on the command line: %q", args)
	}
}

func TestSetSharedMemory(t *testing.T) {
	for _, tc := range []struct {
		mem qemu.Memory
		m   string
	}{
		{qemu.Memory{Size: "512M"}, "512M"},
		{qemu.Memory{Size: "512M", Slots: 8, MaxMem: "4096M"}, "512M,slots=8,maxmem=4096M"},
	} {
		q := minimalQEMU()
		setSharedMemory(&q, tc.mem)
		args := govmmArgs(t, q)
		want := []string{"-m", tc.m, "-object", "memory-backend-memfd,id=mem0,size=512M,share=on", "-numa", "node,memdev=mem0"}
		i := slices.Index(args, "-m")
		if i < 0 || !slices.Equal(args[i:min(i+len(want), len(args))], want) {
			t.Fatalf("command line %q lacks %q", args, want)
		}
		if n := count(args, "-m"); n != 1 {
			t.Errorf("%d -m arguments (govmm added its own memory): %q", n, args)
		}
	}
}

func count(args []string, s string) int {
	n := 0
	for _, a := range args {
		if a == s {
			n++
		}
	}
	return n
}

// TestCommandLineWithoutLaunch shows that govmm still logs the command line
// of a cancelled launch, and starts nothing: commandLine relies on both.
func TestCommandLineWithoutLaunch(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	q := qemu.Config{
		// Would create marker if it ran.
		Path:    "/bin/sh",
		Name:    "probe",
		Knobs:   qemu.Knobs{NoDefaults: true},
		Devices: []qemu.Device{rawArgs{"-c", "touch " + marker}},
	}
	args, err := commandLine(q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(args, "-nodefaults") || !slices.Contains(args, "probe") {
		t.Fatalf("command line %q lacks the configured arguments", args)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("commandLine ran the program")
	}
}
