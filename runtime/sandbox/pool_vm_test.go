package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// TestVMPool fills a pool of one clone from the real guest image and agent, hands it to a
// container whose share has a read-only bind (the bind reaches the running QEMU, still
// read-only) and whose init is the one the clone's agent started ahead, and checks that the container's end, a dead shim's cleanup and RemovePool leave
// nothing: no QEMU, no slot, no mount.
func TestVMPool(t *testing.T) {
	cfg := templateTestConfig(t)
	cfg.Factory.Pool = 1
	cfg.Agent.Debug = true // the guest's console says which init the container got
	base := filepath.Dir(cfg.Runtime.StateDir)
	cache := runtimecache.Dir(cfg.Runtime.StateDir)
	t.Cleanup(func() { RemovePool(context.Background(), cache) })
	logf, _ := recordLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	fill := func() runtimecache.PoolSlot {
		t.Helper()
		if err := FillPool(ctx, cfg, logf); err != nil {
			t.Fatal(err)
		}
		slots, err := runtimecache.PoolSlots(cache)
		if err != nil || len(slots) != 1 || slots[0].State != runtimecache.SlotStateReady {
			t.Fatalf("after a fill of one, the pool holds %+v (%v)", slots, err)
		}
		return slots[0]
	}
	slot := fill()
	pid := slotPID(t, slot.Dir)
	if n := niceOf(t, pid); n != waitingNice {
		t.Errorf("a waiting clone's QEMU runs at nice %d, want %d", n, waitingNice)
	}
	if again := fill(); again != slot {
		t.Fatalf("a fill of a full pool changed it: %+v, then %+v", slot, again)
	}

	// A container takes it: its files, and a bind read-only on the host that the guest mounts
	// read-write, reach the running clone.
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, guestSpec, refills := takeForTest(ctx, t, cfg, "pooled", data, logf)
	if s.slot != slot.Dir || s.VM.PID != pid {
		t.Fatalf("the container did not get the pooled clone %s (pid %d): slot %q, pid %d", slot.Dir, pid, s.slot, s.VM.PID)
	}
	if *refills != 0 {
		t.Errorf("taking a clone refilled the pool before the container started")
	}
	s.RefillPool()
	s.RefillPool()
	if *refills != 1 {
		t.Errorf("a container that took a clone asked for %d refills, want 1", *refills)
	}
	if n := niceOf(t, pid); n != workingNice {
		t.Errorf("a taken clone's QEMU runs at nice %d, want %d", n, workingNice)
	}
	share := agentproto.Share{Type: agentproto.Share9P, Tag: agentproto.SharedTag, GuestPath: agentproto.SharedGuestDir, Subdir: runtimecache.SlotShareSubdir}
	rw := []specs.Mount{{Destination: "/data", Type: "bind", Source: guestSpec.Mounts[0].Source, Options: []string{"rbind", "rw"}}}
	out := runContainerIn(ctx, t, s.Agent, "pooled", []string{"sh", "-c", "cat /data/f; echo pwned > /data/f 2>/dev/null || echo refused"}, share, rw)
	if out != "host data\nrefused\n" {
		t.Errorf("the container in the pooled clone printed %q, want its file and a refused write", out)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "f")); string(b) != "host data\n" {
		t.Errorf("the guest wrote the host's read-only bind: %q", b)
	}
	// Its init is the one the clone's agent started ahead after the warm-up (agent/spareinit.go).
	console, err := os.ReadFile(filepath.Join(s.VM.StateDir, "console.log"))
	if err != nil || !strings.Contains(string(console), "the container's init is the one started ahead") {
		t.Errorf("the container in the pooled clone did not get the init started ahead (%v); the guest's console:\n%s", err, console)
	}
	// A container's removal waits for Release only: nothing of the container's is mounted on the
	// host any more by then. Destroy waits for the rest.
	if err := s.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(s.StateDir, sharedDirName), filepath.Join(slot.Dir, runtimecache.SlotShare, runtimecache.SlotShareSubdir)} {
		if n, err := mountCount(p); err != nil || n != 0 {
			t.Errorf("after Release, %s holds %d mounts (%v)", p, n, err)
		}
	}
	if err := s.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	requireGone(t, pid, slot.Dir, base)

	// A shim that died with its container: Cleanup finds the pooled clone by the record.
	slot = fill()
	pid = slotPID(t, slot.Dir)
	s, _, _ = takeForTest(ctx, t, cfg, "orphan", data, logf)
	if s.slot != slot.Dir {
		t.Fatalf("the second container did not get the pooled clone")
	}
	s.Agent.Close()
	if err := Cleanup(s.StateDir); err != nil {
		t.Fatal(err)
	}
	requireGone(t, pid, slot.Dir, base)

	// uninstall: RemovePool stops the waiting clones and removes the pool.
	slot = fill()
	pid = slotPID(t, slot.Dir)
	if err := RemovePool(ctx, cache); err != nil {
		t.Fatal(err)
	}
	requireGone(t, pid, runtimecache.PoolDir(cache), base)
}

// takeForTest makes a sandbox of a busybox rootfs with data bound read-only at /data and starts
// its VM; it returns the sandbox, the guest's spec and the count of refills it asked for.
func takeForTest(ctx context.Context, t *testing.T, cfg *config.Config, id, data string, logf func(string, ...any)) (*Sandbox, *specs.Spec, *int) {
	t.Helper()
	stateDir := filepath.Join(cfg.Runtime.StateDir, id)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	buildBusyboxRootfs(t, rootfs)
	spec := &specs.Spec{Root: &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "ro"}}}}
	sh, guestSpec, err := share(filepath.Join(stateDir, sharedDirName), filepath.Join(stateDir, sharedRecordName), spec)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{ID: id, StateDir: stateDir, shared: sh}
	t.Cleanup(func() { s.Destroy(context.Background()) })
	refills := 0
	opts := Options{ID: id, Spec: &specs.Spec{}, Config: cfg, Logf: logf, RefillPool: func() { refills++ }}
	vc := vmConfig(opts, stateDir, hypervisor.AccelTCG, "")
	vc.Logf = logf
	started := time.Now()
	if err := s.startVM(ctx, opts, vc, "", logf); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: agent ready %s after the start", id, time.Since(started).Round(time.Millisecond))
	return s, guestSpec, &refills
}

// slotPID reads the pid of a slot's QEMU.
func slotPID(t *testing.T, slot string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(slot, runtimecache.SlotVM, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// niceOf reads a process's nice value (field 19 of /proc/<pid>/stat).
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(fields[19-3])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// requireGone fails unless QEMU pid has exited, dir is gone and nothing is mounted below base.
func requireGone(t *testing.T, pid int, dir, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for unix.Kill(pid, 0) == nil && !isZombie(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU (pid %d) still runs", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", dir, err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), base) {
			t.Errorf("still mounted: %s", sc.Text())
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}
