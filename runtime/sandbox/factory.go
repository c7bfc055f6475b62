package sandbox

// VM templating ([factory] template = true): the first container boots a template VM to a ready
// agent with no container, saves it (hypervisor.StartTemplate, SaveTemplate) and stops it; each
// container then starts as a clone of it (hypervisor.Restore) with its own rootfs share behind
// the template's 9p device, reseeded and with the host's clock (agentproto.Client.Restored).
// Anything wrong with the template boots the container cold, with the reason in the log: a
// template is an optimisation, never a reason for a container to fail.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// templateStore is the template directory of one runtime configuration.
type templateStore struct {
	root string // <cache>/template
	key  string
	logf func(string, ...any)
}

func (t templateStore) dir() string             { return filepath.Join(t.root, t.key) }
func (t templateStore) path(name string) string { return filepath.Join(t.dir(), name) }

// startVM starts the container's VM and connects to its agent (s.VM, s.Agent): from the
// template when templating is on and the container fits it (startFromTemplate), else by a cold
// boot. s.VM is set with an error when the VM started but its agent did not answer (the caller's
// Destroy stops it).
func (s *Sandbox) startVM(ctx context.Context, opts Options, vc hypervisor.Config, netnsPath string, logf func(string, ...any)) error {
	if opts.Config.Factory.Template {
		err := s.startFromTemplate(ctx, opts, vc, netnsPath, logf)
		if err == nil || errors.Is(err, errCloneNotStopped) {
			return err
		}
		logf("VM template not used, booting the VM cold: %v", err)
	}
	vm, err := hypervisor.Start(ctx, vc)
	if err != nil {
		return fmt.Errorf("starting the VM: %w", err)
	}
	s.VM = vm
	s.Agent, err = connectAgent(ctx, vm, opts.Config.Agent.BootTimeout.Duration(), logf)
	return err
}

// startFromTemplate gives the container a clone of the template: one waiting in the pool when
// there is one ([factory] pool), else one restored now.
func (s *Sandbox) startFromTemplate(ctx context.Context, opts Options, vc hypervisor.Config, netnsPath string, logf func(string, ...any)) error {
	if err := fitsTemplate(opts, vc); err != nil {
		return err
	}
	key, err := templateKey(templateConfig(vc, ""))
	if err != nil {
		return err
	}
	if opts.Config.Factory.Pool > 0 {
		err := s.takePooled(ctx, opts, vc, key, netnsPath, logf)
		if !errors.Is(err, errNotPoolable) {
			s.refill = opts.RefillPool // once the container started (RefillPool)
		}
		if err == nil {
			return nil
		}
		logf("no clone from the pool, restoring one: %v", err)
	}
	vm, agent, err := startClone(ctx, opts, vc, key, logf)
	if err != nil {
		return err
	}
	s.VM, s.Agent = vm, agent
	return nil
}

// errCloneNotStopped: a failed clone's QEMU did not stop, so no cold boot may follow in its
// state directory.
var errCloneNotStopped = errors.New("a clone that failed could not be stopped")

// startClone restores a clone of the template key, building the template first if there is none.
// On error nothing of the clone is left.
func startClone(ctx context.Context, opts Options, vc hypervisor.Config, key string, logf func(string, ...any)) (*hypervisor.VM, *agentproto.Client, error) {
	t := templateStore{root: runtimecache.TemplatesDir(vc.CacheDir), key: key, logf: logf}
	if err := t.ensure(ctx, vc, opts.Config.Agent.BootTimeout.Duration()); err != nil {
		return nil, nil, err
	}
	built := t.built()
	vm, agent, err := t.clone(ctx, vc, opts.Config.Agent.BootTimeout.Duration(), logf)
	if err != nil {
		// Whatever broke it would break the next clone too: the next container rebuilds it.
		// Not when this container was cancelled (docker kill while starting): the template
		// is not at fault.
		if ctx.Err() == nil {
			t.discard(ctx, err, built)
		}
		return nil, nil, err
	}
	return vm, agent, nil
}

// fitsTemplate reports why a container cannot be a clone: the template has the configured
// size, a 9p share and no disk.
func fitsTemplate(opts Options, vc hypervisor.Config) error {
	h := opts.Config.Hypervisor
	switch {
	case vc.CacheDir == "":
		return errors.New("no cache directory for the template")
	case guestFSType(h.SharedFS) != hypervisor.Share9P:
		return fmt.Errorf("shared_fs = %q: templates need \"virtio-9p\"", h.SharedFS)
	case len(vc.Blocks) > 0:
		return errors.New("the container has disks (direct-assigned volumes or --device)")
	case vc.MemoryMiB != h.MemoryMiB || vc.VCPUs != min(h.VCPUs, max(hostCPUs(), 1)):
		return fmt.Errorf("the container's limits size its VM at %d MiB and %d vCPUs, the template has %d MiB and %d",
			vc.MemoryMiB, vc.VCPUs, h.MemoryMiB, h.VCPUs)
	}
	return nil
}

// templateConfig is the template VM's configuration: the container's, without what belongs to
// the container. stateDir "" leaves the state directory empty (for the key).
func templateConfig(vc hypervisor.Config, stateDir string) hypervisor.Config {
	tc := vc
	tc.ID = "template"
	tc.StateDir = stateDir
	tc.NetNSPath = "" // a network namespace of its own, gone with it
	tc.Placed = nil
	tc.Blocks = nil
	tc.Shares = nil
	for _, s := range vc.Shares {
		// Same tag and type; the path is the template's empty directory, re-pointed per clone.
		s.HostPath = ""
		if stateDir != "" {
			s.HostPath = filepath.Join(filepath.Dir(stateDir), "share")
		}
		tc.Shares = append(tc.Shares, s)
	}
	return tc
}

// templateKey hashes everything a clone must have in common with its template: the QEMU
// binary, kernel, initrd and firmware (by identity: an upgrade or rollback replaces them), the
// shim itself (which writes QEMU's command line), the VM's configuration, and the host's boot (a
// template does not outlive a reboot).
func templateKey(tc hypervisor.Config) (string, error) {
	h := sha256.New()
	shim, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("template key: the shim's own path: %w", err)
	}
	for _, p := range []string{shim, tc.QEMUPath, tc.Kernel, tc.Initrd, tc.Firmware} {
		id, err := fileIdentity(p)
		if err != nil {
			return "", fmt.Errorf("template key: %w", err)
		}
		fmt.Fprintf(h, "%s\n", id)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("template key: the host's boot id: %w", err)
	}
	vmDesc := struct {
		Machine, Accel string
		Params         []string
		VCPUs, Mem     int
		MaxMem         int
		Shares         []hypervisor.Share
		Debug          bool
	}{tc.MachineType, tc.Accelerator, tc.KernelParams, tc.VCPUs, tc.MemoryMiB, tc.MaxMemoryMiB, tc.Shares, tc.Debug}
	b, err := json.Marshal(vmDesc)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "%s\n%s\n", strings.TrimSpace(string(boot)), b)
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// fileIdentity names a file's content as long as nothing rewrites it in place.
func fileIdentity(p string) (string, error) {
	if p == "" {
		return "-", nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%s %d %d %d %d.%d", p, st.Dev, st.Ino, fi.Size(), st.Mtim.Sec, st.Mtim.Nsec), nil
}

// retryFailedBuild is how long a failed build keeps containers from trying again: each try
// costs a container a cold boot more.
const retryFailedBuild = 10 * time.Minute

// ensure builds the template unless there is one, even a broken one (clone says what is wrong
// with it). Concurrent first containers build it once: the others wait on the lock, then find
// it.
func (t templateStore) ensure(ctx context.Context, vc hypervisor.Config, timeout time.Duration) error {
	if t.present() {
		return nil
	}
	unlock, err := t.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if t.present() {
		return nil
	}
	failed := t.path(runtimecache.TemplateFailed)
	if fi, err := os.Stat(failed); err == nil && time.Since(fi.ModTime()) < retryFailedBuild {
		return fmt.Errorf("building the VM template failed at %s (see %s); the next try is after %s",
			fi.ModTime().Format(time.RFC3339), failed, fi.ModTime().Add(retryFailedBuild).Format(time.RFC3339))
	}
	start := time.Now()
	if err := t.build(ctx, vc, timeout); err != nil {
		err = fmt.Errorf("building the VM template: %w", err)
		// A build cancelled with its container is not a failed build: the next one tries.
		if ctx.Err() == nil && os.MkdirAll(t.dir(), 0o700) == nil {
			os.Remove(failed)
			_ = writeFileSync(failed, []byte(err.Error()+"\n"))
		}
		return err
	}
	t.logf("built the VM template %s in %s", t.dir(), time.Since(start).Round(time.Millisecond))
	return nil
}

// present reports whether a template was built (its ready file exists).
func (t templateStore) present() bool {
	_, err := os.Lstat(t.path(runtimecache.TemplateReady))
	return err == nil
}

// readyRecord reads the template's ready file: its key, size and build time.
func (t templateStore) readyRecord() (runtimecache.ReadyFile, error) {
	var m runtimecache.ReadyFile
	b, err := os.ReadFile(t.path(runtimecache.TemplateReady))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Key != t.key {
		return m, fmt.Errorf("%s is not this template's", t.path(runtimecache.TemplateReady))
	}
	return m, nil
}

// ready checks that the template's files are all there.
func (t templateStore) ready() error {
	if _, err := t.readyRecord(); err != nil {
		return err
	}
	for _, name := range []string{runtimecache.TemplateMemory, runtimecache.TemplateState} {
		if fi, err := os.Lstat(t.path(name)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("the template's %s file is missing or not a regular file", name)
		}
	}
	return nil
}

// lock takes the template root's lock, waiting for it as long as ctx allows.
func (t templateStore) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(t.root, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", t.root, err)
	}
	f, err := os.OpenFile(filepath.Join(t.root, runtimecache.TemplateLock), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("the template lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("the template lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another container to build the template: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unusedAfter is how long a template of another key is kept without a clone: another runtime
// configuration sharing the state directory may still use it; an upgraded kernel, QEMU or
// configuration will not.
const unusedAfter = 10 * time.Minute

// build boots the template VM in a fresh directory, waits for its agent, saves it and renames
// the directory into place. Holds the lock.
func (t templateStore) build(ctx context.Context, vc hypervisor.Config, timeout time.Duration) error {
	t.removeUnused()
	tmp := filepath.Join(t.root, runtimecache.TemplateBuildPrefix+t.key)
	if err := os.MkdirAll(filepath.Join(tmp, "share"), 0o700); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	tc := templateConfig(vc, filepath.Join(tmp, "vm"))
	vm, err := hypervisor.StartTemplate(ctx, tc, filepath.Join(tmp, runtimecache.TemplateMemory))
	if err != nil {
		return err
	}
	defer vm.Stop(context.WithoutCancel(ctx))
	agent, err := connectAgent(ctx, vm, timeout, t.logf)
	if err != nil {
		return err
	}
	// Saved with the modules every container needs loaded, so no clone loads them again.
	err = waitPreloaded(ctx, agent, timeout)
	// The session ends before the snapshot: each clone's host starts its own.
	agent.Close()
	if err != nil {
		return err
	}
	if err := vm.SaveTemplate(ctx, filepath.Join(tmp, runtimecache.TemplateState)); err != nil {
		return err
	}
	if err := vm.Stop(ctx); err != nil {
		return err
	}
	meta, err := json.Marshal(runtimecache.ReadyFile{Key: t.key, MemoryMiB: vc.MemoryMiB, VCPUs: vc.VCPUs, Created: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, runtimecache.TemplateReady), meta); err != nil {
		return err
	}
	os.RemoveAll(t.dir()) // the record of a failed build
	if err := os.Rename(tmp, t.dir()); err != nil {
		return fmt.Errorf("put the template in place: %w", err)
	}
	done = true
	return nil
}

// removeUnused removes what other templates left: builds a dead shim left (with their QEMU),
// records of failed builds, and templates no clone was made of lately. Running clones keep their
// memory file open. Holds the lock.
func (t templateStore) removeUnused() {
	entries, _ := os.ReadDir(t.root)
	for _, e := range entries {
		old := filepath.Join(t.root, e.Name())
		if e.Name() == runtimecache.TemplateLock {
			continue
		}
		if fi, err := os.Stat(filepath.Join(old, runtimecache.TemplateReady)); err == nil && time.Since(fi.ModTime()) < unusedAfter {
			continue
		}
		if err := hypervisor.Cleanup(filepath.Join(old, "vm")); err != nil {
			t.logf("cleaning up %s: %v", old, err)
		}
		os.RemoveAll(old)
	}
}

// waitPreloaded returns once the agent has loaded the module groups the kernel command line
// names (agentproto.ModulesParam).
func waitPreloaded(ctx context.Context, agent *agentproto.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		info, err := agent.Ping(ctx)
		if err != nil {
			return fmt.Errorf("waiting for the template's agent to load its modules: %w", err)
		}
		if info.Preloaded {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the template's agent did not load its modules within %s: %w", timeout, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clone restores a clone with the container's configuration and hands its agent entropy and
// the time.
func (t templateStore) clone(ctx context.Context, vc hypervisor.Config, timeout time.Duration, logf func(string, ...any)) (*hypervisor.VM, *agentproto.Client, error) {
	if err := t.ready(); err != nil {
		return nil, nil, err
	}
	vm, err := hypervisor.Restore(ctx, vc, t.path(runtimecache.TemplateMemory), t.path(runtimecache.TemplateState))
	if err != nil {
		return nil, nil, err
	}
	agent, err := connectAgent(ctx, vm, timeout, logf)
	if err == nil {
		entropy := make([]byte, agentproto.RestoreEntropyLen)
		rand.Read(entropy)
		if err = agent.Restored(ctx, entropy); err != nil {
			agent.Close()
			err = fmt.Errorf("reseeding the clone: %w", err)
		}
	}
	if err != nil {
		if stopErr := vm.Stop(context.WithoutCancel(ctx)); stopErr != nil {
			// A clone that would not stop must not be followed by a cold boot in its state
			// directory: the container fails instead.
			return nil, nil, fmt.Errorf("%w: %v (after: %v)", errCloneNotStopped, stopErr, err)
		}
		return nil, nil, err
	}
	// Marks the template as in use (removeUnused).
	now := time.Now()
	_ = os.Chtimes(t.path(runtimecache.TemplateReady), now, now)
	return vm, agent, nil
}

// built is when the template in place was built (its ready file's record), zero when there is
// none or the record is not this template's: it tells one build of the key from the next.
func (t templateStore) built() time.Time {
	m, err := t.readyRecord()
	if err != nil {
		return time.Time{}
	}
	return m.Created
}

// discard removes a template that failed to give a clone, the build of it that was there before
// the clone (built), unless another container rebuilt it meanwhile: that one is not at fault.
func (t templateStore) discard(ctx context.Context, why error, built time.Time) {
	unlock, err := t.lock(ctx)
	if err != nil {
		return
	}
	defer unlock()
	if _, err := os.Stat(t.dir()); errors.Is(err, fs.ErrNotExist) {
		return
	}
	if now := t.built(); !now.IsZero() && !now.Equal(built) {
		return
	}
	trash := filepath.Join(t.root, runtimecache.TemplateBuildPrefix+"discarded-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(t.dir(), trash); err == nil {
		os.RemoveAll(trash)
		t.logf("removed the VM template %s (%v): the next container rebuilds it", t.dir(), why)
	}
}
