package runtimecache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The pool of clones ([factory] pool = N), runtime/sandbox/pool.go:
//
//	<state_dir>.cache/pool/
//	  .fill.lock                     held by the one process that fills the pool
//	  fill.log                       what the fillers said
//	  <key>/<slot>/                  one clone of the template <key>
//	    vm/                          its VM state directory (QEMU's pid file, sockets, logs)
//	    share/                       its 9p export, a tmpfs; the container's share goes at share/c
//	    nic.json                     its spare network card (QEMU device, MAC, tap, slot)
//	    ready                        written once the clone is restored and warm: it can be taken
//	    taken                        the ready file renamed by the container that took it; holds
//	                                 that container's state directory
const (
	poolDirName = "pool"
	// PoolFillLock is held by the process filling the pool.
	PoolFillLock = ".fill.lock"
	// PoolFillLog gets the output of the processes filling the pool.
	PoolFillLog = "fill.log"
	// FillPoolEnv, set to "1" in its environment, makes the shim binary a filler of the pool
	// instead of a shim; the installer tells fillers from containers' shims by it.
	FillPoolEnv = "KATA_DEPLOY_FILL_POOL"
	// Names in a slot.
	SlotVM    = "vm"
	SlotShare = "share"
	SlotReady = "ready"
	SlotTaken = "taken"
	// SlotNIC records the clone's spare network card, if it has one (JSON).
	SlotNIC = "nic.json"
	// SlotShareSubdir is where a container's share is bound in the slot's export.
	SlotShareSubdir = "c"
)

// PoolDir is where the runtime keeps its pool of clones.
func PoolDir(cacheDir string) string { return filepath.Join(cacheDir, poolDirName) }

// Slot states.
const (
	SlotStateStarting = "starting" // being restored and warmed, or left so by a dead process
	SlotStateReady    = "ready"
	SlotStateTaken    = "taken"
)

// PoolSlot is one clone of the pool.
type PoolSlot struct {
	Key   string // the template's
	Dir   string
	State string
}

// PoolSlots lists the slots under cacheDir's pool, by key; none when there is no pool.
func PoolSlots(cacheDir string) ([]PoolSlot, error) {
	root := PoolDir(cacheDir)
	keys, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pool of clones: %w", err)
	}
	var out []PoolSlot
	for _, k := range keys {
		if !k.IsDir() || strings.HasPrefix(k.Name(), ".") {
			continue
		}
		slots, err := os.ReadDir(filepath.Join(root, k.Name()))
		if err != nil {
			return out, fmt.Errorf("reading the pool of clones: %w", err)
		}
		for _, s := range slots {
			if !s.IsDir() {
				continue
			}
			dir := filepath.Join(root, k.Name(), s.Name())
			out = append(out, PoolSlot{Key: k.Name(), Dir: dir, State: slotState(dir)})
		}
	}
	return out, nil
}

func slotState(dir string) string {
	if fi, err := os.Lstat(filepath.Join(dir, SlotReady)); err == nil && fi.Mode().IsRegular() {
		return SlotStateReady
	}
	if fi, err := os.Lstat(filepath.Join(dir, SlotTaken)); err == nil && fi.Mode().IsRegular() {
		return SlotStateTaken
	}
	return SlotStateStarting
}
