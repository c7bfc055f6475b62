package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"rollup", "00400000-7ffd [rollup]\nRss:              276384 kB\nPss:              272512 kB\nPss_Anon:         194000 kB\n", 272512, false},
		{"no Pss line", "Rss: 10 kB\n", 0, true},
		{"empty", "", 0, true},
		{"garbage value", "Pss: x kB\n", 0, true},
		{"Pss_Anon is not Pss", "Pss_Anon:  5 kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePSS([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parsePSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPSSOfMissingProcessIsAnError(t *testing.T) {
	if v, err := pss(-1); err == nil {
		t.Errorf("pss(-1) = %d, nil; want an error", v)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantComm string
		wantPPID int
		ok       bool
	}{
		{"plain", "42 (qemu-system-x86) S 7 42 42 0", "qemu-system-x86", 7, true},
		{"comm with spaces and parens", "43 (a (b) c) R 9 1", "a (b) c", 9, true},
		{"truncated", "44 (x", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := parseStat(1, []byte(tt.in))
			if ok != tt.ok || p.comm != tt.wantComm || p.ppid != tt.wantPPID {
				t.Errorf("parseStat = %+v, %v; want comm %q ppid %d ok %v", p, ok, tt.wantComm, tt.wantPPID, tt.ok)
			}
		})
	}
}

func TestContainerProcs(t *testing.T) {
	shim := "/opt/kata-deploy/current/bin/containerd-shim-kata-v2"
	ps := []proc{
		{pid: 10, ppid: 1, comm: "containerd-shim", argv: []string{shim, "-namespace", "moby", "-id", "abc", "-address", "/run/c.sock"}},
		{pid: 11, ppid: 1, comm: "containerd-shim", argv: []string{shim, "-namespace", "moby", "-id", "other"}},
		{pid: 12, ppid: 10, comm: "virtiofsd", argv: []string{"/usr/libexec/virtiofsd"}},
		{pid: 13, ppid: 12, comm: "virtiofsd", argv: []string{"/usr/libexec/virtiofsd"}},
		{pid: 14, ppid: 11, comm: "virtiofsd", argv: []string{"/usr/libexec/virtiofsd"}},
		{pid: 15, ppid: 1, comm: "sh", argv: []string{"sh", "-c", "echo -id abc"}},
	}
	tests := []struct {
		id            string
		wantShim, vfs []int
	}{
		{"abc", []int{10}, []int{12, 13}},
		{"other", []int{11}, []int{14}},
		{"missing", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			s, v := containerProcs(ps, tt.id)
			if !slices.Equal(s, tt.wantShim) || !slices.Equal(v, tt.vfs) {
				t.Errorf("containerProcs(%q) = %v, %v; want %v, %v", tt.id, s, v, tt.wantShim, tt.vfs)
			}
		})
	}
}

func TestParseCounts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"1,5,10,20", []int{1, 5, 10, 20}, false},
		{" 2 , 3", []int{2, 3}, false},
		{"0", nil, true},
		{"5,1", nil, true},
		{"1,,2", nil, true},
		{"x", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseCounts(tt.in)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("parseCounts(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want time.Duration
	}{
		{"none", nil, 0},
		{"odd", []time.Duration{3, 1, 2}, 2},
		{"even", []time.Duration{4, 1, 3, 2}, 2},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("%s: median = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	r := &results{Times: map[string][]time.Duration{
		kindRunc: {100 * time.Millisecond}, kindKata: {1500 * time.Millisecond}, kindFloor: {1000 * time.Millisecond},
	}}
	tests := []struct {
		name        string
		floor, runc float64
		wantMissed  bool
	}{
		{"no targets", 0, 0, false},
		{"both met", 1.5, 15, false},
		{"floor missed", 1.3, 0, true},
		{"runc missed", 0, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTargets(r, options{maxKataFloor: tt.floor, maxKataRunc: tt.runc})
			if errors.Is(err, errTarget) != tt.wantMissed {
				t.Errorf("checkTargets = %v; want missed %v", err, tt.wantMissed)
			}
		})
	}
}

func TestCheckVariantTargets(t *testing.T) {
	r := &results{
		Times: map[string][]time.Duration{
			kindRunc: {100 * time.Millisecond}, kindKata: {1500 * time.Millisecond}, kindFloor: {1000 * time.Millisecond},
			kindTemplate: {300 * time.Millisecond}, kindPool: {250 * time.Millisecond},
		},
		Density: map[string][]densityPoint{
			// Per container: 70 MiB at 10, 50 MiB at 20.
			kindTemplate: {{N: 1, QEMU: 90 << 10}, {N: 10, QEMU: 10 * 60 << 10, Shim: 10 * 10 << 10}, {N: 20, QEMU: 20 * 40 << 10, Shim: 20 * 10 << 10}},
			// Not measured at 10: per container 60 MiB at 5, the most measured (the waiting clone apart).
			kindPool: {{N: 1, QEMU: 30 << 10}, {N: 5, QEMU: 5 * 50 << 10, Shim: 5 * 10 << 10, Waiting: 200 << 10}},
		},
	}
	tests := []struct {
		name string
		o    options
		want []string // the misses named, in order; none: met
	}{
		{"no targets", options{}, nil},
		{"runc ratios met", options{maxTmplRunc: 3, maxPoolRunc: 2.5}, nil},
		{"pool ratio missed", options{maxTmplRunc: 3, maxPoolRunc: 2}, []string{"kata+pool/runc = 2.50x, target <= 2.00x"}},
		{"PSS met", options{maxTmplPSS: 70}, nil},
		{"PSS missed at 10, not at the most measured", options{maxTmplPSS: 65}, []string{"kata+template PSS per container at N=10 = 70.0 MiB, target <= 65.0 MiB"}},
		{"all misses", options{maxKataRunc: 10, maxTmplRunc: 2, maxPoolRunc: 2, maxTmplPSS: 55}, []string{
			"kata/runc = 15.00x", "kata+template/runc = 3.00x", "kata+template PSS per container at N=10 = 70.0 MiB",
			"kata+pool/runc = 2.50x", "kata+pool PSS per container at N=5 = 60.0 MiB",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTargets(r, tt.o)
			if errors.Is(err, errTarget) != (len(tt.want) > 0) {
				t.Fatalf("checkTargets = %v; want missed %v", err, tt.want)
			}
			if err == nil {
				return
			}
			msg, rest := err.Error(), err.Error()
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("checkTargets = %v; want %q (in this order: %q)", msg, w, tt.want)
				}
				rest = rest[i+len(w):]
			}
			if n := strings.Count(msg, "target <="); n != len(tt.want) {
				t.Errorf("checkTargets = %v; want %d misses", msg, len(tt.want))
			}
		})
	}
	// A variant not measured is not checked.
	if err := checkTargets(&results{Times: r.Times}, options{maxTmplPSS: 1}); err != nil {
		t.Errorf("PSS target without density figures: %v", err)
	}
}

func TestOptionsCheck(t *testing.T) {
	tests := []struct {
		name string
		o    options
		ok   bool
	}{
		{"none", options{}, true},
		{"template ratio", options{template: true, maxTmplRunc: 2}, true},
		{"template ratio without -template", options{maxTmplRunc: 2}, false},
		{"pool ratio", options{pool: true, maxPoolRunc: 2}, true},
		{"pool ratio without -pool", options{template: true, maxPoolRunc: 2}, false},
		{"PSS with the pool only", options{pool: true, density: []int{1, 10}, maxTmplPSS: 64}, true},
		{"PSS without density", options{template: true, maxTmplPSS: 64}, false},
		{"PSS without a templated kind", options{density: []int{1}, maxTmplPSS: 64}, false},
	}
	for _, tt := range tests {
		if err := tt.o.check(); (err == nil) != tt.ok {
			t.Errorf("%s: check = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}

func TestFloorArgs(t *testing.T) {
	f := &floorVM{QEMU: "qemu", Firmware: "/q/qboot.rom", Machine: "q35", Accel: "tcg", Kernel: "/k/vmlinux",
		Initrd: "/k/initrd", VCPUs: 1, MemoryMiB: 512, Share: "/s", Socket: "/x.sock", Console: "/c.log",
		Command: []string{"/bin/busybox", "true"}}
	line := strings.Join(f.args(), " ")
	for _, want := range []string{
		"-machine q35,accel=tcg", "-cpu qemu64", "-m 512M", "-bios /q/qboot.rom", "-kernel /k/vmlinux",
		"-initrd /k/initrd", "floor.cmd=/bin/busybox,true", "virtio-9p-pci,fsdev=fs0,mount_tag=floor",
		"local,id=fs0,path=/s,security_model=none", "socket,id=port0,path=/x.sock", "name=floor.0",
		"floor.modules=virtio_ring,virtio,",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("floor command line lacks %q:\n%s", want, line)
		}
	}
	// The floor has none of what the runtime adds for hot-plug.
	if strings.Contains(line, "pcie-root-port") {
		t.Errorf("floor command line has root ports:\n%s", line)
	}
	f.Accel = "kvm"
	if line := strings.Join(f.args(), " "); !strings.Contains(line, "-cpu host") {
		t.Errorf("under kvm the floor should use -cpu host:\n%s", line)
	}
}

// TestTeardownsDone: the wait after a kata run ends when the runtime's state directory is empty
// (or absent), and fails loudly, naming what is left, when a teardown never ends.
func TestTeardownsDone(t *testing.T) {
	defer func(d time.Duration) { teardownTimeout = d }(teardownTimeout)
	teardownTimeout = 50 * time.Millisecond
	dir := t.TempDir()
	ctx := context.Background()
	if err := teardownsDone(ctx, dir); err != nil {
		t.Errorf("empty state directory: %v", err)
	}
	if err := teardownsDone(ctx, filepath.Join(dir, "absent")); err != nil {
		t.Errorf("absent state directory: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := teardownsDone(ctx, dir); err == nil || !strings.Contains(err.Error(), "holds 1 entries") {
		t.Errorf("a sandbox that stays: %v", err)
	}
}
