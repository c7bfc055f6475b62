package hypervisor

// VM templating: a template VM is booted once with its RAM in a file (memory-backend-file,
// share=on), paused when its guest is ready, and its device state saved by an outgoing
// migration that skips the shared RAM (x-ignore-shared). A clone is a QEMU with exactly the same
// device list whose RAM maps that file privately (share=off: copy-on-write, unchanged pages are
// shared through the page cache by every clone), which loads the device state by an incoming
// migration and continues where the template stopped.
//
// QEMU 7.2 has no "file:" migration URI, and "exec:" needs a process QEMU's seccomp filter
// (-sandbox spawn=deny) forbids: the state file travels as a descriptor passed over QMP
// (getfd), both ways. It is never in QEMU's mount namespace.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kata-containers/govmm/qemu"
	"golang.org/x/sys/unix"
)

// Migration bounds: the state file holds device state and firmware, a few MiB at most.
const (
	migrationTimeout = time.Minute
	migrationPoll    = 5 * time.Millisecond
	// migrationFD is the name the state file's descriptor gets in QEMU (QMP getfd).
	migrationFD = "tmplstate"
)

// memoryFile backs the guest's RAM with a file instead of anonymous memory.
type memoryFile struct {
	path   string
	shared bool // the template writes its RAM through to the file; clones map it privately
}

// StartTemplate boots a VM whose RAM lives in memFile, which must not exist yet: it is created
// 0600 at the RAM's size. Once the guest is ready, SaveTemplate saves the rest.
func StartTemplate(ctx context.Context, cfg Config, memFile string) (*VM, error) {
	if err := templateCompatible(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	if err := createMemoryFile(memFile, cfg.MemoryMiB); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	cfg.memory = &memoryFile{path: memFile, shared: true}
	vm, err := Start(ctx, cfg)
	if err != nil {
		os.Remove(memFile)
		return nil, err
	}
	return vm, nil
}

// templateCompatible rejects what a template cannot hold: virtio-fs needs its RAM in a memfd
// that virtiofsd maps, and disks are the container's own, not the template's.
func templateCompatible(c *Config) error {
	if hasVirtiofs(c.Shares) {
		return errors.New("a VM template cannot use virtio-fs shares: use shared_fs = \"virtio-9p\"")
	}
	if len(c.Blocks) > 0 {
		return errors.New("a VM template cannot have disks")
	}
	return nil
}

// createMemoryFile creates the RAM file of a template: QEMU opens it but is not given its
// directory, so it is created here.
func createMemoryFile(path string, memoryMiB int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create the template's memory file: %w", err)
	}
	err = f.Truncate(int64(memoryMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("size the template's memory file: %w", err)
	}
	return nil
}

// SaveTemplate pauses the VM and writes its device state to stateFile (created 0600, must not
// exist); the RAM stays in the memory file. The VM stays paused: Stop it afterwards. On error
// stateFile is removed.
func (vm *VM) SaveTemplate(ctx context.Context, stateFile string) error {
	if vm.cfg.memory == nil || !vm.cfg.memory.shared {
		return fmt.Errorf("%s was not started by StartTemplate", &vm.cfg)
	}
	f, err := os.OpenFile(stateFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("%s: create the template's state file: %w", &vm.cfg, err)
	}
	defer f.Close()
	err = vm.migrate(ctx, f, func(ctx context.Context, q *qemu.QMP) error {
		if err := q.ExecuteStop(ctx); err != nil {
			return err
		}
		return q.ExecSetMigrateArguments(ctx, "fd:"+migrationFD)
	})
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		os.Remove(stateFile)
		return fmt.Errorf("%s: saving the template: %w", &vm.cfg, err)
	}
	return nil
}

// Restore starts a clone of a template: cfg must describe the same VM as the template's (only
// its ID, state directory, network namespace and share paths may differ), memFile and stateFile
// are what StartTemplate and SaveTemplate wrote. The clone runs once Restore returns; its guest
// continues where the template was paused.
func Restore(ctx context.Context, cfg Config, memFile, stateFile string) (*VM, error) {
	if err := templateCompatible(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	if err := checkMemoryFile(memFile, cfg.MemoryMiB); err != nil {
		return nil, fmt.Errorf("%s: %w", &cfg, err)
	}
	f, err := os.OpenFile(stateFile, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: open the template's state file: %w", &cfg, err)
	}
	defer f.Close()
	cfg.memory = &memoryFile{path: memFile}
	cfg.incoming = f
	return Start(ctx, cfg)
}

// checkMemoryFile accepts a regular file of exactly the RAM's size: QEMU would grow a shorter
// one, and the guest would find zeros where its kernel was.
func checkMemoryFile(path string, memoryMiB int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("the template's memory file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(memoryMiB)<<20 {
		return fmt.Errorf("the template's memory file %s is not a regular file of %d MiB", path, memoryMiB)
	}
	return nil
}

// restore loads the device state into a QEMU started with -incoming defer and -S.
func (vm *VM) restore(ctx context.Context) error {
	err := vm.migrate(ctx, vm.cfg.incoming, func(ctx context.Context, q *qemu.QMP) error {
		return q.ExecuteMigrationIncoming(ctx, "fd:"+migrationFD)
	})
	if err != nil {
		return fmt.Errorf("restoring the template's state: %w", err)
	}
	return nil
}

// migrate hands f to QEMU, sets the capability that leaves shared RAM out of the stream, runs
// begin (which starts the migration) and waits until it completed.
func (vm *VM) migrate(ctx context.Context, f *os.File, begin func(context.Context, *qemu.QMP) error) error {
	ctx, cancel := context.WithTimeout(ctx, migrationTimeout)
	defer cancel()
	return vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error {
		caps := []map[string]any{{"capability": "x-ignore-shared", "state": true}}
		if err := q.ExecSetMigrationCaps(ctx, caps); err != nil {
			return fmt.Errorf("migrate-set-capabilities x-ignore-shared: %w", err)
		}
		if err := q.ExecuteGetFD(ctx, migrationFD, f); err != nil {
			return fmt.Errorf("pass the state file: %w", err)
		}
		if err := begin(ctx, q); err != nil {
			return err
		}
		return waitMigration(ctx, q)
	})
}

// waitMigration polls query-migrate until the migration ended.
func waitMigration(ctx context.Context, q *qemu.QMP) error {
	for {
		st, err := q.ExecuteQueryMigration(ctx)
		if err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("the migration %s (QEMU's log says why)", st.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the migration did not complete (last status %q): %w", st.Status, ctx.Err())
		case <-time.After(migrationPoll):
		}
	}
}

// fileMemoryArgs are the RAM arguments of a template or clone: the same memory object (same id,
// size and NUMA node) in both, shared or private.
func fileMemoryArgs(mem qemu.Memory, f *memoryFile) rawArgs {
	m := mem.Size
	if mem.Slots > 0 && mem.MaxMem != "" {
		m += ",slots=" + strconv.Itoa(int(mem.Slots)) + ",maxmem=" + mem.MaxMem
	}
	share := "off"
	if f.shared {
		share = "on"
	}
	return rawArgs{
		"-m", m,
		"-object", "memory-backend-file,id=mem0,size=" + mem.Size + ",mem-path=" + f.path + ",share=" + share,
		"-numa", "node,memdev=mem0",
	}
}
