package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
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

func TestDescribeStuck(t *testing.T) {
	proc := t.TempDir()
	write := func(tid, name, content string) {
		dir := filepath.Join(proc, "42", "task", tid)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	write("42", "stat", "42 (kata agent) D 1 42 42 0 -1")
	write("42", "wchan", "p9_client_rpc")
	write("42", "syscall", "165 0x1 0x2 0x3 0x4 0x5 0x6 0x7ffd 0x4567")
	write("43", "stat", "43 (kata agent) S 1 42 42 0 -1")
	write("43", "wchan", "0")
	write("43", "syscall", "running")
	got := DescribeStuck(proc, 42)
	want := "thread 42 state D in p9_client_rpc syscall 165; thread 43 state S"
	if got != want {
		t.Errorf("DescribeStuck = %q, want %q", got, want)
	}
	if got := DescribeStuck(proc, 7); got != "" {
		t.Errorf("a process that is gone: %q, want nothing", got)
	}
}

// A real sleeping process reads as sleeping.
func TestDescribeStuckLive(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var got string
	for range 100 { // until it sleeps
		if got = DescribeStuck("/proc", cmd.Process.Pid); strings.Contains(got, "state S") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("DescribeStuck of a sleeping process = %q, want state S", got)
}
