package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	data := []byte("MemTotal:         241864 kB\nMemFree:          180000 kB\nMemAvailable:     200000 kB\nBuffers:               0 kB\n")
	usage, total, err := ParseMeminfo(data)
	if err != nil || total != 241864*1024 || usage != 41864*1024 {
		t.Errorf("got %d %d %v", usage, total, err)
	}
	if _, _, err := ParseMeminfo([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Errorf("no MemAvailable: no error")
	}
}

func TestParseProcStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	data := []byte("cpu  100 2 30 5000 7 1 2 3 50 5\ncpu0 100 2 30 5000 7 1 2 3 50 5\nintr 1\n")
	got, err := ParseProcStat(data)
	want := uint64(100+2+30+1+2+3) * 10_000_000
	if err != nil || got != want {
		t.Errorf("got %d, %v; want %d", got, err, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 x 4 5\n"} {
		if _, err := ParseProcStat([]byte(bad)); err == nil {
			t.Errorf("ParseProcStat(%q): no error", bad)
		}
	}
}

func TestPidsInNamespace(t *testing.T) {
	proc := t.TempDir()
	ns := map[int]string{1: "pid:[4026531836]", 80: "pid:[4026532200]", 81: "pid:[4026532200]", 90: "pid:[4026532300]", 120: "pid:[4026532200]"}
	for pid, link := range ns {
		dir := filepath.Join(proc, strconv.Itoa(pid), "ns")
		os.MkdirAll(dir, 0o755)
		os.Symlink(link, filepath.Join(dir, "pid"))
	}
	os.MkdirAll(filepath.Join(proc, "sys"), 0o755)
	os.WriteFile(filepath.Join(proc, "meminfo"), nil, 0o644)
	got, err := PidsInNamespace(proc, 80)
	if err != nil || !reflect.DeepEqual(got, []int{80, 81, 120}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := PidsInNamespace(proc, 999); err == nil {
		t.Errorf("unknown pid: no error")
	}
}
