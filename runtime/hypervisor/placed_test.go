package hypervisor

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-containers/govmm/qemu"
)

// TestPlacedStartsQEMUStopped: with a Placed hook QEMU starts with its vCPUs stopped (-S);
// without one the command line is as before.
func TestPlacedStartsQEMUStopped(t *testing.T) {
	tests := []struct {
		name   string
		placed func(int) error
		want   bool
	}{
		{"no hook", nil, false},
		{"hook", func(int) error { return nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			c.Placed = tt.placed
			if got := slices.Contains(launchArgs(t, c), "-S"); got != tt.want {
				t.Fatalf("-S on the command line: %v, want %v", got, tt.want)
			}
		})
	}
}

// qmpStatus asks QEMU's run state on its QMP socket.
func qmpStatus(ctx context.Context, socket string) (string, error) {
	disconnected := make(chan struct{})
	q, _, err := qemu.QMPStart(ctx, socket, qemu.QMPConfig{}, disconnected)
	if err != nil {
		return "", err
	}
	defer func() { q.Shutdown(); <-disconnected }()
	if err := q.ExecuteQMPCapabilities(ctx); err != nil {
		return "", err
	}
	st, err := q.ExecuteQueryStatus(ctx)
	return st.Status, err
}

// TestVMPlaced boots VMs with a Placed hook: it sees virtiofsd and QEMU, QEMU has not run guest
// code yet when it is called, the guest runs afterwards, and a failing hook fails Start without
// leaving anything behind.
func TestVMPlaced(t *testing.T) {
	g := requireGuest(t)

	t.Run("every process is placed before the guest runs", func(t *testing.T) {
		sh := shareDir(t, "placed")
		cfg := g.config(t, "vm-placed", []Share{{Tag: "share0", HostPath: sh, Type: ShareVirtiofs}},
			"kdtest=hello", "kdtest.fs=virtiofs:share0")
		var mu sync.Mutex
		var placed []string
		statusAtPlacement := ""
		cfg.Placed = func(pid int) error {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			name := strings.TrimSpace(string(comm))
			mu.Lock()
			placed = append(placed, name)
			mu.Unlock()
			if strings.HasPrefix(name, "qemu") {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				st, err := qmpStatus(ctx, newLayout(cfg.StateDir).qmp)
				if err != nil {
					return err
				}
				statusAtPlacement = st
			}
			return nil
		}
		vm := start(t, cfg)
		if len(placed) != 2 || !strings.HasPrefix(placed[0], "virtiofsd") || !strings.HasPrefix(placed[1], "qemu") {
			t.Fatalf("placed %q, want virtiofsd then QEMU", placed)
		}
		if statusAtPlacement != "prelaunch" && statusAtPlacement != "paused" {
			t.Errorf("QEMU's state when placed: %q, want its vCPUs not started yet", statusAtPlacement)
		}
		if got := readAgent(t, vm, 60*time.Second); got != "hello share0=placed" {
			t.Fatalf("agent.0 said %q: the guest did not run after placement", got)
		}
	})

	t.Run("a failing hook fails Start and leaves nothing", func(t *testing.T) {
		cfg := g.config(t, "vm-notplaced", nil, "kdtest=wait")
		var qemuPid int
		cfg.Placed = func(pid int) error { qemuPid = pid; return errors.New("no cgroup for you") }
		vm, err := Start(context.Background(), cfg)
		if err == nil {
			_ = vm.Stop(context.Background())
			t.Fatal("Start succeeded although Placed failed")
		}
		if !strings.Contains(err.Error(), "no cgroup for you") {
			t.Errorf("Start's error does not say why: %v", err)
		}
		if qemuPid == 0 || alive(qemuPid) {
			t.Errorf("QEMU (pid %d) was not started or still runs", qemuPid)
		}
		if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
			t.Errorf("state directory left behind: %v", err)
		}
	})
}
