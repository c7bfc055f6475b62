package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReport(t *testing.T) {
	r := &results{
		Machine: machine{CPU: "Test CPU", Cores: 2, MemoryKiB: 4 << 20, Accel: "tcg", GuestKernel: "6.1.0-57-amd64", VCPUs: 1, GuestMiB: 512},
		Runs:    3,
		Times: map[string][]time.Duration{
			kindRunc:  {250 * time.Millisecond, 260 * time.Millisecond, 270 * time.Millisecond},
			kindKata:  {2600 * time.Millisecond, 2700 * time.Millisecond, 2800 * time.Millisecond},
			kindFloor: {1700 * time.Millisecond, 1800 * time.Millisecond, 1900 * time.Millisecond},
		},
		Trace: []traceStep{{"until request start", 450 * time.Millisecond}},
		Density: map[string][]densityPoint{kindKata: {
			{N: 1, QEMU: 270 << 10, Shim: 17 << 10, StartNth: 2 * time.Second},
			{N: 5, QEMU: 5 * 260 << 10, Shim: 5 * 16 << 10, StartNth: 3 * time.Second},
		}},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "benchmarks.md")
	if err := writeReport(path, r); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, notWant := range []string{"kata+template/runc", "kata+pool/runc", "The same with", "waiting clone's QEMU |"} {
		if md := string(md); strings.Contains(md, notWant) {
			t.Errorf("a report without kata+template and kata+pool has %q:\n%s", notWant, md)
		}
	}
	for _, want := range []string{"| kata+template | n/a (not built) |", "| kata+pool | n/a (not built) |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	r.Times[kindTemplate] = []time.Duration{500 * time.Millisecond, 520 * time.Millisecond, 540 * time.Millisecond}
	r.Times[kindPool] = []time.Duration{390 * time.Millisecond, 400 * time.Millisecond, 410 * time.Millisecond}
	r.Density[kindTemplate] = []densityPoint{{N: 1, QEMU: 40 << 10, Shim: 17 << 10, StartNth: time.Second}}
	r.Density[kindPool] = []densityPoint{
		{N: 1, QEMU: 30 << 10, Shim: 17 << 10, StartNth: 300 * time.Millisecond, Waiting: 90 << 10},
		{N: 2, QEMU: 2 * 25 << 10, Shim: 2 * 17 << 10, StartNth: 310 * time.Millisecond, Waiting: 60 << 10},
	}
	smallTBMiB = 24
	t.Cleanup(func() { smallTBMiB = 0 })
	if err := writeReport(path, r); err != nil {
		t.Fatal(err)
	}
	if md, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"`[hypervisor] tcg_translation_buffer` set to 24 MiB",
		"| kata | 2700 ms | 2600 ms | 2800 ms |",
		"kata/floor = **1.50x**", "kata/runc = **10.38x**", "| 5 | 1380.0 MiB | 276.0 MiB |",
		"| kata+template | 520 ms | 500 ms | 540 ms |", "kata+template/runc = **2.00x**", "kata+template/floor = **0.29x**",
		"The same with VM templating", "| 1 | 57.0 MiB | 57.0 MiB | 40.0 MiB | 17.0 MiB | 0.0 MiB | 1000 ms |\n",
		"| kata+pool | 400 ms | 390 ms | 410 ms |", "kata+pool/floor = **0.22x**, kata+pool/runc = **1.54x**.",
		"The same with a pool of one waiting clone (kata+pool); the waiting clone itself is not counted: add its QEMU's PSS once",
		"| start of Nth | waiting clone's QEMU |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
		"| 1 | 47.0 MiB | 47.0 MiB | 30.0 MiB | 17.0 MiB | 0.0 MiB | 300 ms | 90.0 MiB |",
		"| 2 | 84.0 MiB | 42.0 MiB | 50.0 MiB | 34.0 MiB | 0.0 MiB | 310 ms | 60.0 MiB |",
		"Test CPU, 2 cores", "tcg", "bench/startup.png", "bench/density.png",
		"| until request start | 450 ms |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, png := range []string{startupPlot, densityPlot} {
		data, err := os.ReadFile(filepath.Join(dir, "bench", png))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", png)
		}
	}
}
