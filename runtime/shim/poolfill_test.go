package shim

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStartNiced: the child runs at the priority given, this process's threads keep theirs.
func TestStartNiced(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skip: restoring a thread's priority to 0 after raising it needs root (CAP_SYS_NICE)")
	}
	cmd := exec.Command("sleep", "5")
	if err := startNiced(cmd, 7); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if n, _ := strconv.Atoi(fields[19-3]); n != 7 {
		t.Errorf("the child runs at nice %d, want 7", n)
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-p != 0 {
			t.Errorf("thread %d of the shim was left at nice %d", tid, 20-p)
		}
	}
}
