package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// fakeSlot makes a slot directory with the given marker file ("" for none).
func fakeSlot(t *testing.T, p poolStore, name, marker string) string {
	t.Helper()
	slot := filepath.Join(p.dir(), name)
	if err := os.MkdirAll(slot, 0o700); err != nil {
		t.Fatal(err)
	}
	if marker != "" {
		if err := os.WriteFile(filepath.Join(slot, marker), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return slot
}

func TestClaimTakesEachSlotOnce(t *testing.T) {
	p := poolStore{root: filepath.Join(t.TempDir(), "pool"), key: "k1", logf: t.Logf}
	fakeSlot(t, p, "starting", "")
	fakeSlot(t, p, "taken", runtimecache.SlotTaken)
	for _, n := range []string{"a", "b", "c"} {
		fakeSlot(t, p, n, runtimecache.SlotReady)
	}
	if got := p.waiting(); got != 3 {
		t.Fatalf("waiting() = %d, want 3", got)
	}
	// Eight containers race for three clones: each clone goes to one of them.
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	empty := 0
	for i := range 8 {
		sandboxDir := filepath.Join(t.TempDir(), "sb")
		os.Mkdir(sandboxDir, 0o700)
		wg.Go(func() {
			slot, err := p.claim(sandboxDir)
			mu.Lock()
			defer mu.Unlock()
			if err == errPoolEmpty {
				empty++
				return
			}
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
				return
			}
			if other, ok := got[slot]; ok {
				t.Errorf("%s taken by %s and %s", slot, other, sandboxDir)
			}
			got[slot] = sandboxDir
		})
	}
	wg.Wait()
	if len(got) != 3 || empty != 5 {
		t.Fatalf("3 clones went to %d containers, %d found the pool empty", len(got), empty)
	}
	for slot, sandboxDir := range got {
		if b, _ := os.ReadFile(filepath.Join(sandboxDir, poolSlotRecord)); strings.TrimSpace(string(b)) != slot {
			t.Errorf("%s records %q, want %s", sandboxDir, b, slot)
		}
		if b, _ := os.ReadFile(filepath.Join(slot, runtimecache.SlotTaken)); strings.TrimSpace(string(b)) != sandboxDir {
			t.Errorf("%s says it was taken by %q, want %s", slot, b, sandboxDir)
		}
	}
	if p.waiting() != 0 {
		t.Errorf("waiting() = %d after every clone was taken", p.waiting())
	}
}

func TestIsSlotPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/run/kd.cache/pool/0123abcd/42":       true,
		"/run/kd.cache/pool/0123abcd/42/":      false,
		"/run/kd.cache/pool/0123abcd/../42":    false,
		"run/kd.cache/pool/0123abcd/42":        false,
		"/run/kd.cache/template/0123abcd/42":   false,
		"/run/kd.cache/pool/0123abcd":          false,
		"/etc":                                 false,
		"":                                     false,
		"/run/kd.cache/pool/0123abcd/42\n/etc": false,
	} {
		if got := isSlotPath(p); got != want {
			t.Errorf("isSlotPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestOrphaned(t *testing.T) {
	p := poolStore{root: filepath.Join(t.TempDir(), "pool"), key: "k1"}
	old := time.Now().Add(-2 * orphanedAfter)
	alive := t.TempDir()
	os.WriteFile(filepath.Join(alive, poolSlotRecord), []byte("x\n"), 0o600)
	tests := []struct {
		name, owner string
		age         time.Time
		want        bool
	}{
		{"owner alive", alive, old, false},
		{"owner gone", filepath.Join(t.TempDir(), "gone"), old, true},
		{"owner gone, just taken", filepath.Join(t.TempDir(), "gone"), time.Now(), false},
		{"never recorded", "", old, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slot := fakeSlot(t, p, strings.ReplaceAll(tt.name, " ", "-"), "")
			taken := filepath.Join(slot, runtimecache.SlotTaken)
			os.WriteFile(taken, []byte(tt.owner), 0o600)
			os.Chtimes(taken, tt.age, tt.age)
			if got := orphaned(slot); got != tt.want {
				t.Errorf("orphaned = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSweep: a sweep keeps the waiting clones (another template's for a while) and the taken
// ones still in use, and removes the rest (no QEMU runs here: the slots have no pid file).
func TestSweep(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pool")
	p := poolStore{root: root, key: "k1", logf: t.Logf}
	other := poolStore{root: root, key: "k0"}
	alive := t.TempDir()
	os.WriteFile(filepath.Join(alive, poolSlotRecord), []byte("x\n"), 0o600)
	keep := []string{fakeSlot(t, p, "ready", runtimecache.SlotReady), fakeSlot(t, p, "in-use", "")}
	os.WriteFile(filepath.Join(keep[1], runtimecache.SlotTaken), []byte(alive), 0o600)
	takenOld := fakeSlot(t, other, "in-use-old", "")
	os.WriteFile(filepath.Join(takenOld, runtimecache.SlotTaken), []byte(alive), 0o600)
	keep = append(keep, takenOld)
	keep = append(keep, fakeSlot(t, other, "ready-other", runtimecache.SlotReady))
	gone := []string{fakeSlot(t, p, "half-made", ""), fakeSlot(t, other, "ready-old", runtimecache.SlotReady)}
	long := time.Now().Add(-2 * unusedAfter)
	os.Chtimes(filepath.Join(gone[1], runtimecache.SlotReady), long, long)
	p.sweep()
	for _, s := range keep {
		if _, err := os.Stat(s); err != nil {
			t.Errorf("the sweep removed %s: %v", s, err)
		}
	}
	for _, s := range gone {
		if _, err := os.Stat(s); !os.IsNotExist(err) {
			t.Errorf("the sweep left %s", s)
		}
	}
}

// TestAwaitPlaced: a pooled QEMU's move into the container's cgroup runs in the background; the
// container's start waits for it and fails with its error (once read, the same error every time),
// before it reads anything of the bundle.
func TestAwaitPlaced(t *testing.T) {
	placing := make(chan error, 1)
	placing <- errors.New("cgroup.procs: no such process")
	s := &Sandbox{VM: &hypervisor.VM{PID: 42}, placing: placing}
	for range 2 {
		err := s.StartNetwork(context.Background(), t.TempDir(), t.Logf)
		if err == nil || !strings.Contains(err.Error(), "placing QEMU (pid 42) in the container's cgroup: cgroup.procs: no such process") {
			t.Fatalf("StartNetwork after a failed placement: %v", err)
		}
	}
	if err := (&Sandbox{}).awaitPlaced(); err != nil {
		t.Errorf("a sandbox placed at once (not pooled) waits for nothing, got %v", err)
	}
}
