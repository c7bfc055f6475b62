package hypervisor

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCappedLog(t *testing.T) {
	tests := []struct {
		name   string
		limit  int64
		writes []int // sizes of successive writes
	}{
		{"under the cap", 100, []int{10, 20}},
		{"exactly half", 100, []int{50}},
		{"one rotation", 100, []int{40, 40}},
		{"one write much larger than the cap", 100, []int{1000}},
		{"many small writes", 100, []int{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "console.log")
			c, err := newCappedLog(path, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for i, n := range tt.writes {
				p := bytes.Repeat([]byte{byte('a' + i%26)}, n)
				for j := range p {
					p[j] += byte(j % 3) // distinguishable bytes
				}
				if k, err := c.Write(p); err != nil || k != n {
					t.Fatalf("Write(%d) = %d, %v", n, k, err)
				}
				all = append(all, p...)
			}
			c.Close()
			cur, _ := os.ReadFile(path)
			old, _ := os.ReadFile(path + rotatedSuffix)
			if int64(len(cur)+len(old)) > tt.limit {
				t.Errorf("the log holds %d+%d bytes, over the cap %d", len(old), len(cur), tt.limit)
			}
			kept := append(old, cur...)
			if !bytes.HasSuffix(all, kept) {
				t.Errorf("the log does not hold the end of the output: kept %q", kept)
			}
			if want := min(int64(len(all)), tt.limit/2); int64(len(kept)) < want {
				t.Errorf("the log keeps %d bytes, want at least %d", len(kept), want)
			}
			tail := readConsoleTail(path, 30)
			if want := all[max(0, len(all)-30):]; tail != string(want) {
				t.Errorf("tail %q, want %q", tail, want)
			}
		})
	}
}

// TestConsoleDrainBounded: a guest printing without end fills no more than the cap on the host.
func TestConsoleDrainBounded(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "console.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	flood := 8 * ConsoleLogCap
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		line := []byte(strings.Repeat("flood ", 20) + "\n")
		for sent := 0; sent < flood; sent += len(line) {
			c.Write(line)
		}
		c.Write([]byte("the last words\n"))
		c.Close()
	}()
	logPath := filepath.Join(dir, "console.log")
	done, err := startConsole(context.Background(), sock, logPath)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the drain did not end when the console closed")
	}
	var total int64
	for _, p := range []string{logPath, logPath + rotatedSuffix} {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
		}
	}
	if total > ConsoleLogCap || total < ConsoleLogCap/2 {
		t.Errorf("%d bytes of console on the host after a %d-byte flood, want between %d and %d", total, flood, ConsoleLogCap/2, ConsoleLogCap)
	}
	if tail := readConsoleTail(logPath, 64); !strings.HasSuffix(tail, "the last words\n") {
		t.Errorf("the log lost the end of the output: %q", tail)
	}
}

// TestVMConsoleFloodCapped: a guest writing to its serial console without end leaves at most
// ConsoleLogCap bytes on the host, and the log still ends with its latest output.
func TestVMConsoleFloodCapped(t *testing.T) {
	g := requireGuest(t)
	vm := start(t, g.config(t, "vm-flood", nil, "kdtest=flood"))
	if got := readAgent(t, vm, 60*time.Second); got != "hello" {
		t.Fatalf("agent.0 said %q", got)
	}
	logPath := filepath.Join(vm.StateDir, consoleName)
	var size int64
	rotated := false
	// Under TCG the guest prints about 1 MiB in 10-20 s; give it time to pass the cap.
	for end := time.Now().Add(45 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		size = 0
		for _, p := range []string{logPath, logPath + rotatedSuffix} {
			if fi, err := os.Stat(p); err == nil {
				size += fi.Size()
				rotated = rotated || p != logPath
			}
		}
		if size > ConsoleLogCap {
			t.Fatalf("%d bytes of console on the host, over the cap of %d", size, ConsoleLogCap)
		}
	}
	t.Logf("console log: %d bytes, rotated: %v", size, rotated)
	if !rotated {
		t.Errorf("the flood never filled half the cap (%d bytes): the test proves nothing", size)
	}
	if tail := vm.Console(); !strings.Contains(tail, "console flood") {
		t.Errorf("the console's end lacks the guest's output: %q", tail)
	}
}
