package agent

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"golang.org/x/sys/unix"
)

func TestReaperDeliversStatuses(t *testing.T) {
	sh := testreq.Command(t, "sh")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewReaper()
	go r.Run(ctx)
	start := func(script string) (int, <-chan int) {
		pid, ch, err := r.Start(func() (int, error) {
			p, err := os.StartProcess(sh, []string{"sh", "-c", script}, &os.ProcAttr{})
			if err != nil {
				return 0, err
			}
			defer p.Release()
			return p.Pid, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return pid, ch
	}
	// The first exits at once: its status must not be lost even though it
	// may die before Start returns.
	_, quick := start("exit 3")
	pid, slow := start("sleep 10")
	unix.Kill(pid, unix.SIGKILL)
	for name, tc := range map[string]struct {
		ch   <-chan int
		want int
	}{"exit 3": {quick, 3}, "SIGKILL": {slow, 137}} {
		select {
		case got := <-tc.ch:
			if got != tc.want {
				t.Errorf("%s: status %d, want %d", name, got, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no status", name)
		}
	}
}
