package hostcgroup

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const mib = 1 << 20

// QEMUOverheadMiB is what QEMU and virtiofsd need on the host beyond the guest's RAM: QEMU's own
// heap, the TCG translation cache, device buffers, and the page cache of the files it serves over
// 9p (reclaimable, but charged). Measured under TCG with a guest that touches all its free RAM and
// then spins: QEMU's peak RSS exceeds the guest's RAM by 126 MiB (384 MiB guest) and 82 MiB
// (640 MiB), the same with virtio-fs; the allowance is twice that, since reaching the limit kills
// the VM. What QEMU allocated before it was placed (its start-up heap, the kernel and initrd
// copied into guest RAM) stays charged where it was.
const QEMUOverheadMiB = 256

// MinPids is the lowest pids limit put on the host cgroup. On the host every QEMU thread counts
// (one per vCPU, the main loop, RCU, up to 64 I/O workers) and QEMU aborts when it cannot make
// one; the guest enforces the container's own limit on its processes.
const MinPids = 128

// Resources derives the host cgroup's limits from the container's: the CPU quota, shares and
// cpuset as given, the pids limit (at least MinPids), the block I/O weight, and a memory limit of
// the VM's RAM plus QEMUOverheadMiB when the container has one, the block I/O throttles (QEMU
// and virtiofsd do the container's I/O on the host's devices). Device rules are not copied: they
// are the guest's business, and QEMU needs /dev/kvm, /dev/net/tun and /dev/vhost-*.
func Resources(r *specs.LinuxResources, vmMemoryMiB int) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if r == nil {
		return out
	}
	if c := r.CPU; c != nil && (c.Shares != nil || c.Quota != nil || c.Period != nil || c.Cpus != "" || c.Mems != "") {
		out.CPU = &specs.LinuxCPU{Shares: c.Shares, Quota: c.Quota, Period: c.Period, Cpus: c.Cpus, Mems: c.Mems}
	}
	if m := r.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		limit := int64(max(vmMemoryMiB, int((*m.Limit+mib-1)/mib))+QEMUOverheadMiB) * mib
		out.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		limit := max(*p.Limit, MinPids)
		out.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if b := r.BlockIO; b != nil {
		out.BlockIO = blockIO(b)
	}
	return out
}

// blockIO keeps the weight and the per-device throttles; nil when there are none.
func blockIO(b *specs.LinuxBlockIO) *specs.LinuxBlockIO {
	out := &specs.LinuxBlockIO{
		ThrottleReadBpsDevice: b.ThrottleReadBpsDevice, ThrottleWriteBpsDevice: b.ThrottleWriteBpsDevice,
		ThrottleReadIOPSDevice: b.ThrottleReadIOPSDevice, ThrottleWriteIOPSDevice: b.ThrottleWriteIOPSDevice,
	}
	if b.Weight != nil && *b.Weight > 0 {
		out.Weight = b.Weight
	}
	if out.Weight == nil && len(out.ThrottleReadBpsDevice)+len(out.ThrottleWriteBpsDevice)+len(out.ThrottleReadIOPSDevice)+len(out.ThrottleWriteIOPSDevice) == 0 {
		return nil
	}
	return out
}
