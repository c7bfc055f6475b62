package sandbox

// The pool of clones ([factory] pool = N): clones of the template restored ahead of time, their
// guests run for a moment to warm them (under TCG the first run of guest code is translated
// first), then left waiting with an idle agent and an empty share, at a low CPU priority. A
// container takes one (takePooled) instead of restoring a clone: its share is bound below the
// clone's export, QEMU goes into the container's cgroup at the normal priority, and the agent
// gets fresh entropy and the time. A taken clone is that container's only: it is never returned.
// A detached process of the shim (FillPool) refills the pool in the background, started once the
// container's process has (Sandbox.RefillPool).
//
// The layout is runtimecache's (internal/runtimecache/pool.go). A slot's share/ is a tmpfs made a
// shared mount before QEMU starts: QEMU's mount namespace, a slave of the host's, receives what is
// mounted below it later, with the flags it was mounted with (read-only binds stay read-only).
// QEMU's 9p server holds the export's directory open, so the container's share goes below it
// (share/c), and the agent binds that directory at the usual guest path (agentproto.Share.Subdir).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
	"github.com/kata-deploy/kata-deploy/runtime/network"
)

// poolSlotRecord, in a sandbox's state directory, names the pool slot its VM came from: Cleanup
// finds the VM there after the shim died.
const poolSlotRecord = "pool.slot"

// Priorities of a pooled clone's QEMU: low while it waits, normal once a container has it.
const (
	waitingNice = 10
	workingNice = 0
)

// Bounds of the pool's upkeep.
const (
	// warmPings are the agent round trips that warm a fresh clone after its throwaway container.
	warmPings = 5
	// orphanedAfter is how long a taken slot whose sandbox is gone is left alone: the sandbox
	// may be writing its record.
	orphanedAfter = time.Minute
	// fillFailures is how many clones in a row may fail before a fill gives up.
	fillFailures = 2
)

var (
	// errPoolEmpty: no clone was waiting.
	errPoolEmpty = errors.New("the pool of clones is empty")
	// errNotPoolable: the container cannot run in a pooled clone (it took none).
	errNotPoolable = errors.New("the container does not fit a pooled clone")
)

// poolStore is the pool of clones of one template.
type poolStore struct {
	root string // <cache>/pool
	key  string
	logf func(string, ...any)
}

func (p poolStore) dir() string { return filepath.Join(p.root, p.key) }

// takePooled gives the sandbox a waiting clone of the template key from the pool (the container
// fits the template), or an error (errPoolEmpty when none waits, errNotPoolable when the
// container cannot use one). On error nothing of the clone is left with the sandbox.
func (s *Sandbox) takePooled(ctx context.Context, opts Options, vc hypervisor.Config, key, netnsPath string, logf func(string, ...any)) error {
	if netnsPath != "" {
		// A pooled QEMU already runs in a network namespace of its own.
		return fmt.Errorf("%w: its network namespace %s is not the VM's own (Docker before 26)", errNotPoolable, netnsPath)
	}
	p := poolStore{root: runtimecache.PoolDir(vc.CacheDir), key: key, logf: logf}
	slot, err := p.claim(s.StateDir)
	if err != nil {
		return err
	}
	s.slot = slot
	if s.VM, s.Agent, s.spareNIC, s.placing, err = adoptSlot(ctx, slot, vc, opts.Config.Agent.BootTimeout.Duration(), logf); err != nil {
		err = fmt.Errorf("the clone in %s: %w", slot, err)
		if rerr := s.releaseSlot(); rerr != nil {
			// The record stays: the sandbox's Cleanup tries again.
			err = fmt.Errorf("%w (and cleaning it up: %v)", err, rerr)
		}
		s.slot = "" // the VM the container gets instead is its own
		return err
	}
	return nil
}

// RefillPool starts refilling the pool of clones if this sandbox asked it for a clone (took one,
// or found none), once: call it when the container's process has started, so that restoring the
// next clone does not compete with this container's start (under TCG on two cores it would cost
// it about 0.3 s). Destroy calls it too, for a container that never started.
func (s *Sandbox) RefillPool() {
	s.refillOnce.Do(func() {
		if s.refill != nil {
			s.refill()
		}
	})
}

// claim takes a ready slot: renaming its ready file is atomic, so two containers never take the
// same one. The sandbox's record of it is written before it is used.
func (p poolStore) claim(sandboxDir string) (string, error) {
	entries, err := os.ReadDir(p.dir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the pool of clones: %w", err)
	}
	for _, e := range entries {
		slot := filepath.Join(p.dir(), e.Name())
		if !e.IsDir() || os.Rename(filepath.Join(slot, runtimecache.SlotReady), filepath.Join(slot, runtimecache.SlotTaken)) != nil {
			continue
		}
		err := os.WriteFile(filepath.Join(sandboxDir, poolSlotRecord), []byte(slot+"\n"), 0o600)
		if err == nil {
			// For the pool's upkeep: whose it is (orphaned slots are removed).
			err = os.WriteFile(filepath.Join(slot, runtimecache.SlotTaken), []byte(sandboxDir+"\n"), 0o600)
		}
		if err != nil {
			os.Remove(filepath.Join(sandboxDir, poolSlotRecord))
			return "", errors.Join(fmt.Errorf("recording the clone taken from %s: %w", slot, err), cleanupSlot(slot))
		}
		return slot, nil
	}
	return "", errPoolEmpty
}

// slotConfig is the configuration a pooled clone was restored with: the template's, with the
// slot's state directory and its export (templateConfig puts the export beside the state
// directory: <slot>/share).
func slotConfig(vc hypervisor.Config, slot string) hypervisor.Config {
	c := templateConfig(vc, filepath.Join(slot, runtimecache.SlotVM))
	c.ID = "pool-" + filepath.Base(slot)
	return c
}

// adoptSlot takes over the slot's QEMU for the container of vc: at the normal priority, with its
// share bound below the export and a fresh agent session, reseeded and with the host's clock. It
// is moved into the container's cgroup in the background (placed): with cgroup v1 each hierarchy
// waits for an RCU grace period, tens of ms in all, which the container's create in the guest
// hides (Sandbox.awaitPlaced). On error QEMU is stopped (the caller's releaseSlot removes the
// rest).
func adoptSlot(ctx context.Context, slot string, vc hypervisor.Config, timeout time.Duration, logf func(string, ...any)) (_ *hypervisor.VM, _ *agentproto.Client, spare *network.SpareNIC, placed <-chan error, err error) {
	cfg := slotConfig(vc, slot)
	cfg.ID, cfg.Logf = vc.ID, vc.Logf
	vm, err := hypervisor.Adopt(ctx, cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			vm.Stop(context.WithoutCancel(ctx))
		}
	}()
	if err := vm.SetNice(workingNice); err != nil {
		return nil, nil, nil, nil, err
	}
	if spare, err = adoptSpare(vm, slot); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := bindShare(vc.Shares, slot); err != nil {
		return nil, nil, nil, nil, err
	}
	agent, err := connectAgent(ctx, vm, timeout, logf)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := reseed(ctx, agent); err != nil {
		agent.Close()
		return nil, nil, nil, nil, err
	}
	if vc.Placed != nil {
		ch := make(chan error, 1)
		go func() { ch <- vc.Placed(vm.PID) }()
		placed = ch
	}
	return vm, agent, spare, placed, nil
}

// bindShare binds the container's share (its tmpfs and every bind under it, with their flags)
// below the slot's export, where QEMU receives it.
func bindShare(shares []hypervisor.Share, slot string) error {
	if len(shares) != 1 {
		return fmt.Errorf("a pooled clone exports one share, the container has %d", len(shares))
	}
	target := filepath.Join(slot, runtimecache.SlotShare, runtimecache.SlotShareSubdir)
	// Made before QEMU started, and no guest code other than the agent's has run since: still
	// ours, but a link would send the mount elsewhere.
	if fi, err := os.Lstat(target); err != nil || !fi.IsDir() {
		return fmt.Errorf("the pooled clone's share directory %s is missing or not a directory", target)
	}
	if err := unix.Mount(shares[0].HostPath, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding the container's share %s at %s: %w", shares[0].HostPath, target, err)
	}
	return nil
}

// reseed hands a clone's agent fresh entropy and the host's clock: clones of one template start
// with the same random state and the template's time.
func reseed(ctx context.Context, agent *agentproto.Client) error {
	entropy := make([]byte, agentproto.RestoreEntropyLen)
	rand.Read(entropy)
	if err := agent.Restored(ctx, entropy); err != nil {
		return fmt.Errorf("reseeding the clone: %w", err)
	}
	return nil
}

// releaseSlot removes the sandbox's pool slot, stopping its QEMU if it still runs.
func (s *Sandbox) releaseSlot() error {
	if s.slot == "" {
		return nil
	}
	// Destroy has stopped the VM already; a failed takePooled had none (adoptSlot stops it).
	if err := cleanupSlot(s.slot); err != nil {
		return err
	}
	s.slot = ""
	return removeIfExists(filepath.Join(s.StateDir, poolSlotRecord))
}

// unbindFromSlot unmounts the container's share from below the pooled VM's export (bindShare).
func (s *Sandbox) unbindFromSlot() error {
	if s.slot == "" {
		return nil
	}
	if err := unmountAll(filepath.Join(s.slot, runtimecache.SlotShare, runtimecache.SlotShareSubdir)); err != nil {
		return fmt.Errorf("unbinding the container's share from the VM's pool slot: %w", err)
	}
	return nil
}

// cleanupSlotRecord removes the pool slot a dead shim's sandbox had, if any.
func cleanupSlotRecord(stateDir string) error {
	record := filepath.Join(stateDir, poolSlotRecord)
	b, err := os.ReadFile(record)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	slot := strings.TrimSpace(string(b))
	if !isSlotPath(slot) {
		return fmt.Errorf("%s names %q, not a slot of a pool of clones: left as is", record, slot)
	}
	if err := cleanupSlot(slot); err != nil {
		return err
	}
	return removeIfExists(record)
}

// isSlotPath accepts <...>/pool/<key>/<slot>, clean and absolute.
func isSlotPath(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p && filepath.Base(filepath.Dir(filepath.Dir(p))) == filepath.Base(runtimecache.PoolDir(""))
}

// cleanupSlot stops a slot's QEMU, unmounts its export and removes it. Idempotent.
func cleanupSlot(slot string) error {
	if err := hypervisor.Cleanup(filepath.Join(slot, runtimecache.SlotVM)); err != nil {
		return err
	}
	share := filepath.Join(slot, runtimecache.SlotShare)
	if err := errors.Join(unmountAll(filepath.Join(share, runtimecache.SlotShareSubdir)), unmountAll(share)); err != nil {
		return err
	}
	// Never crosses into a file system still mounted below (removeTree stays on one device).
	return removeTree(slot)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// FillPool restores clones until the pool of cfg holds cfg.Factory.Pool waiting ones, building
// the template first if need be. One process fills at a time: FillPool returns at once when
// another one holds the pool's lock (it sees the clones taken meanwhile before it lets go). It
// also removes what is stale (sweep): clones a dead filler left half-made, taken clones whose
// container is gone, other templates' clones that waited long.
func FillPool(ctx context.Context, cfg *config.Config, logf func(string, ...any)) error {
	if !cfg.Factory.Template || cfg.Factory.Pool <= 0 {
		return nil
	}
	accel, err := accelerator(cfg.Hypervisor.Accelerator, func(string, ...any) {})
	if err != nil {
		return err
	}
	vc := vmConfig(Options{ID: "pool", Config: cfg, Spec: &specs.Spec{}}, "", accel, "")
	vc.Logf = logf
	key, err := templateKey(templateConfig(vc, ""))
	if err != nil {
		return err
	}
	p := poolStore{root: runtimecache.PoolDir(vc.CacheDir), key: key, logf: logf}
	t := templateStore{root: runtimecache.TemplatesDir(vc.CacheDir), key: key, logf: logf}
	for {
		unlock, err := p.tryLock()
		if err != nil || unlock == nil {
			return err // nil: another process fills the pool
		}
		err = p.fill(ctx, t, vc, cfg.Factory.Pool, cfg.Agent.BootTimeout.Duration())
		unlock()
		if err != nil || p.waiting() >= cfg.Factory.Pool {
			return err
		}
	}
}

// tryLock takes the pool's fill lock if it is free: the unlock function, or nil when another
// process holds it.
func (p poolStore) tryLock() (func(), error) {
	if err := os.MkdirAll(p.root, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", p.root, err)
	}
	f, err := os.OpenFile(filepath.Join(p.root, runtimecache.PoolFillLock), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("the pool's lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("the pool's lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// waiting counts the ready slots.
func (p poolStore) waiting() int {
	n := 0
	slots, _ := runtimecache.PoolSlots(filepath.Dir(p.root))
	for _, s := range slots {
		if s.Key == p.key && s.State == runtimecache.SlotStateReady {
			n++
		}
	}
	return n
}

// fill adds clones until want wait. Holds the lock.
func (p poolStore) fill(ctx context.Context, t templateStore, vc hypervisor.Config, want int, timeout time.Duration) error {
	p.sweep()
	failures := 0
	for p.waiting() < want {
		if err := t.ensure(ctx, vc, timeout); err != nil {
			return err
		}
		start := time.Now()
		slot, err := p.add(ctx, t, vc, timeout)
		if err != nil {
			if failures++; failures >= fillFailures || ctx.Err() != nil {
				return err
			}
			p.logf("adding a clone to the pool: %v", err)
			continue
		}
		p.logf("added %s to the pool in %s", slot, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// add restores, warms and marks ready one clone in a new slot. On error nothing of it is left.
func (p poolStore) add(ctx context.Context, t templateStore, vc hypervisor.Config, timeout time.Duration) (_ string, err error) {
	if err := os.MkdirAll(p.dir(), 0o700); err != nil {
		return "", err
	}
	slot, err := os.MkdirTemp(p.dir(), "")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			if cerr := cleanupSlot(slot); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up %s: %v)", err, slot, cerr)
			}
		}
	}()
	if err := makeSlotShare(filepath.Join(slot, runtimecache.SlotShare)); err != nil {
		return "", err
	}
	cfg := slotConfig(vc, slot)
	cfg.Nice = waitingNice
	built := t.built()
	vm, agent, err := t.clone(ctx, cfg, timeout, p.logf)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errCloneNotStopped) {
			t.discard(ctx, err, built)
		}
		return "", err
	}
	if err := plugSpare(ctx, vm, slot); err != nil {
		// A clone without one still saves the restore.
		p.logf("no spare network card in %s: %v", slot, err)
	}
	err = warm(ctx, agent, poolShare(vc))
	// The session ends here: the container's shim starts its own.
	agent.Close()
	if err == nil {
		err = writeFileSync(filepath.Join(slot, runtimecache.SlotReady), nil)
	}
	if err != nil {
		vm.Stop(context.WithoutCancel(ctx))
		return "", err
	}
	return slot, nil
}

// spareRecord is what a slot records of its spare card (runtimecache.SlotNIC).
type spareRecord struct {
	network.SpareNIC
	Slot int `json:"slot"` // the VM's NIC slot (hypervisor.VM.NICSlot)
}

// plugSpare plugs a spare network card into a clone and records it in its slot: the guest probes
// it while the clone waits, and the container's first network link takes it over.
func plugSpare(ctx context.Context, vm *hypervisor.VM, slot string) error {
	spare, err := network.PlugSpare(ctx, vm, fmt.Sprintf("/proc/%d/ns/net", vm.PID))
	if err != nil {
		return err
	}
	b, err := json.Marshal(spareRecord{SpareNIC: spare, Slot: vm.NICSlot(spare.ID)})
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(slot, runtimecache.SlotNIC), b)
}

// adoptSpare tells the adopted VM of its slot's spare card, if it has one.
func adoptSpare(vm *hypervisor.VM, slot string) (*network.SpareNIC, error) {
	b, err := os.ReadFile(filepath.Join(slot, runtimecache.SlotNIC))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var r spareRecord
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err == nil {
		err = vm.AdoptNIC(r.ID, r.Slot)
	}
	if err != nil {
		// The card would stay in the guest, unused and seen by the container.
		return nil, fmt.Errorf("the clone's spare network card: %w", err)
	}
	return &r.SpareNIC, nil
}

// poolShare is the share a container in a pooled clone gets: the export, the container's part
// of it below (runtimecache.SlotShareSubdir).
func poolShare(vc hypervisor.Config) agentproto.Share {
	sh := guestShare(vc)
	sh.Subdir = runtimecache.SlotShareSubdir
	return sh
}

// makeSlotShare mounts a slot's export: the tmpfs of a share root (mountShareRoot), made a shared
// mount so that what is bound below it later reaches QEMU, with the directory the container's
// share will be bound at.
func makeSlotShare(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := mountShareRoot(dir); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	return os.Mkdir(filepath.Join(dir, runtimecache.SlotShareSubdir), 0o700)
}

// warm has a fresh clone mount its export (the share a container's create names: it finds it
// mounted) and run the agent's throwaway container and a few round trips, so that the guest code a
// container's start runs is translated (TCG) and paged in before a container waits for it.
func warm(ctx context.Context, agent *agentproto.Client, share agentproto.Share) error {
	like, err := dockerLike()
	if err != nil {
		return fmt.Errorf("warming the clone: Docker's default confinement: %w", err)
	}
	filter, err := compileSeccomp(like)
	if err != nil {
		return fmt.Errorf("warming the clone: Docker's default confinement: %w", err)
	}
	if err := agent.Warm(ctx, containerinit.WithoutSeccomp(like), filter, share); err != nil {
		return fmt.Errorf("warming the clone: %w", err)
	}
	for range warmPings {
		if _, err := agent.Ping(ctx); err != nil {
			return fmt.Errorf("warming the clone: %w", err)
		}
	}
	return nil
}

// sweep removes what is stale in the pool: half-made clones (the lock holder makes them, and
// that is the caller), taken clones whose sandbox is gone, and clones of other templates that
// waited longer than unusedAfter (after an upgrade or a configuration change nothing takes them;
// another configuration sharing the state directory may still, so not at once). Holds the lock.
func (p poolStore) sweep() {
	slots, err := runtimecache.PoolSlots(filepath.Dir(p.root))
	if err != nil {
		p.logf("sweeping the pool: %v", err)
	}
	for _, s := range slots {
		if s.State == runtimecache.SlotStateTaken && !orphaned(s.Dir) {
			continue
		}
		if s.State == runtimecache.SlotStateReady && (s.Key == p.key || !waitedLonger(s.Dir, unusedAfter)) {
			continue
		}
		if err := cleanupSlot(s.Dir); err != nil {
			p.logf("removing the stale clone %s: %v", s.Dir, err)
		}
	}
	keys, _ := os.ReadDir(p.root)
	for _, k := range keys {
		if k.IsDir() && k.Name() != p.key {
			os.Remove(filepath.Join(p.root, k.Name())) // once empty
		}
	}
}

// waitedLonger reports whether a ready slot was made ready longer than d ago.
func waitedLonger(slot string, d time.Duration) bool {
	fi, err := os.Stat(filepath.Join(slot, runtimecache.SlotReady))
	return err == nil && time.Since(fi.ModTime()) > d
}

// orphaned reports whether a taken slot's sandbox is gone, for a while.
func orphaned(slot string) bool {
	taken := filepath.Join(slot, runtimecache.SlotTaken)
	fi, err := os.Stat(taken)
	if err != nil || time.Since(fi.ModTime()) < orphanedAfter {
		return false
	}
	b, err := os.ReadFile(taken)
	if err != nil {
		return false
	}
	owner := strings.TrimSpace(string(b))
	if owner == "" {
		return true // taken, never recorded: its shim died in between
	}
	_, err = os.Stat(filepath.Join(owner, poolSlotRecord))
	return errors.Is(err, os.ErrNotExist)
}

// RemovePool stops every clone of cacheDir's pool, taken or not, and removes the pool, under its
// fill lock (waiting for a filler to finish). For uninstall, once no container runs.
func RemovePool(ctx context.Context, cacheDir string) error {
	p := poolStore{root: runtimecache.PoolDir(cacheDir), logf: func(string, ...any) {}}
	if _, err := os.Lstat(p.root); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for {
		unlock, err := p.tryLock()
		if err != nil {
			return err
		}
		if unlock != nil {
			defer unlock()
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the pool of clones to be filled: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	slots, err := runtimecache.PoolSlots(cacheDir)
	var errs []error
	errs = append(errs, err)
	for _, s := range slots {
		errs = append(errs, cleanupSlot(s.Dir))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(p.root)
}
