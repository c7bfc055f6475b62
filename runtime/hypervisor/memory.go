package hypervisor

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/kata-containers/govmm/qemu"
)

// Memory hot-plug: RAM is added as pc-dimm devices through QMP, each backed like the boot RAM
// (a shared memfd with virtio-fs, so that virtiofsd can map it too). The guest kernel onlines
// new memory itself (memhp_default_state=online). RAM is never unplugged: the guest would have
// to migrate every page off a DIMM first, and a container's memory limit is lowered in its
// cgroup instead.
const (
	// MemorySlots is how many DIMMs a VM can take (QEMU's "-m slots=").
	MemorySlots = 8
	// MemoryBlockMiB is the guest kernel's memory block size on x86-64: it onlines hot-plugged
	// memory in whole blocks, so every DIMM is a multiple of it.
	MemoryBlockMiB = 128
)

// memoryLayout is the VM's "-m": its boot RAM and, with MaxMemoryMiB above it, the slots and
// ceiling for hot-plugged DIMMs.
func memoryLayout(c *Config) qemu.Memory {
	m := qemu.Memory{Size: strconv.Itoa(c.MemoryMiB) + "M"}
	if c.hotplugMemory() {
		m.Slots = MemorySlots
		m.MaxMem = strconv.Itoa(c.MaxMemoryMiB) + "M"
	}
	return m
}

func (c *Config) hotplugMemory() bool {
	return c.MaxMemoryMiB >= c.MemoryMiB+MemoryBlockMiB
}

// dimms counts what AddMemory plugged.
type dimms struct {
	mu      sync.Mutex
	count   int
	addedMB int
}

// MemoryMiB is the VM's RAM: what it booted with and what AddMemory added since.
func (vm *VM) MemoryMiB() int {
	vm.memory.mu.Lock()
	defer vm.memory.mu.Unlock()
	return vm.cfg.MemoryMiB + vm.memory.addedMB
}

// AddMemory hot-plugs at least mib of RAM (rounded up to whole memory blocks) and returns how
// much it added. It fails when the VM was started without room for it (Config.MaxMemoryMiB) or
// every slot is taken.
func (vm *VM) AddMemory(ctx context.Context, mib int) (int, error) {
	if mib <= 0 {
		return 0, nil
	}
	size := (mib + MemoryBlockMiB - 1) / MemoryBlockMiB * MemoryBlockMiB
	vm.memory.mu.Lock()
	defer vm.memory.mu.Unlock()
	switch {
	case !vm.cfg.hotplugMemory():
		return 0, fmt.Errorf("%s: the VM's RAM is fixed (%d MiB): it was started without room for more", &vm.cfg, vm.cfg.MemoryMiB)
	case vm.memory.count >= MemorySlots:
		return 0, fmt.Errorf("%s: all %d memory slots are in use: restart the container to give it more memory", &vm.cfg, MemorySlots)
	case vm.cfg.MemoryMiB+vm.memory.addedMB+size > vm.cfg.MaxMemoryMiB:
		return 0, fmt.Errorf("%s: %d MiB more would exceed the VM's maximum of %d MiB (the host's memory)", &vm.cfg, size, vm.cfg.MaxMemoryMiB)
	}
	backend, shared := "memory-backend-ram", false
	if hasVirtiofs(vm.cfg.Shares) {
		backend, shared = "memory-backend-memfd", true
	}
	n := strconv.Itoa(vm.memory.count)
	err := vm.qmp(ctx, func(ctx context.Context, q *qemu.QMP) error {
		return q.ExecMemdevAdd(ctx, backend, "hotmem"+n, "", size, shared, "pc-dimm", "dimm"+n, "", "")
	})
	if err != nil {
		return 0, fmt.Errorf("%s: hot-plugging %d MiB of RAM: %w", &vm.cfg, size, err)
	}
	vm.memory.count++
	vm.memory.addedMB += size
	return size, nil
}
