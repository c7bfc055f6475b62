package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// limits are the container's resources as last applied, for docker update.
type limits struct {
	mu          sync.Mutex
	res         specs.LinuxResources
	overheadMiB int // guest RAM beyond the container's memory limit (the guest kernel and agent)
}

func newLimits(spec *specs.Spec, overheadMiB int) *limits {
	l := &limits{overheadMiB: overheadMiB}
	if spec != nil && spec.Linux != nil && spec.Linux.Resources != nil {
		l.res = *spec.Linux.Resources
	}
	return l
}

// maxMemoryMiB is how far a VM booted with bootMiB may grow by hot-plug: up to the host's RAM
// (0 when that leaves no room).
func maxMemoryMiB(bootMiB int) int {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	hostMiB := int(min(uint64(si.Totalram)*uint64(si.Unit)/mib, 1<<20))
	if hostMiB < bootMiB+hypervisor.MemoryBlockMiB {
		return 0
	}
	return hostMiB
}

// UpdateResources applies a container's new resources (docker update), as upstream Kata does:
// resources equal to the current ones change nothing; a memory limit beyond the VM's RAM grows
// the VM by hot-plugged RAM first (RAM is never taken away: a lower limit lowers the container's
// cgroup in the guest); the limits go to the container's cgroup in the guest, then to the VM's
// host cgroup. Nil fields of res keep their value. Device rules are not updatable.
func (s *Sandbox) UpdateResources(ctx context.Context, res *specs.LinuxResources, logf func(string, ...any)) error {
	l := s.limits
	if res == nil || l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !changes(&l.res, res) {
		return nil
	}
	next := merge(l.res, res)
	if err := s.growMemory(ctx, &next, l); err != nil {
		return err
	}
	notes, err := s.Agent.UpdateContainer(ctx, s.ID, res)
	if err != nil {
		return fmt.Errorf("applying the new limits in the VM: %w", err)
	}
	logNotes(logf, notes)
	if err := s.applyResources(&next); err != nil {
		return fmt.Errorf("applying the new limits to the VM's host cgroup: %w", err)
	}
	l.res = next
	return nil
}

// Bounds of what logNotes writes: the notes come from the guest, which could fill the shim's log.
const (
	maxNotes     = 8
	maxNoteBytes = 200
)

// logNotes logs what the guest says it could not apply, bounded and quoted (no forged lines).
func logNotes(logf func(string, ...any), notes []string) {
	for i, n := range notes {
		if i == maxNotes {
			logf("docker update: %d more notes from the VM left out", len(notes)-maxNotes)
			return
		}
		if len(n) > maxNoteBytes {
			n = n[:maxNoteBytes] + "..."
		}
		logf("docker update: not applied in the VM: %q", n)
	}
}

// growMemory hot-plugs RAM when the new memory limit (plus the guest's overhead) exceeds the
// VM's. The host cgroup's limit is raised first, so QEMU may use the RAM it is about to get.
func (s *Sandbox) growMemory(ctx context.Context, next *specs.LinuxResources, l *limits) error {
	if next.Memory == nil || next.Memory.Limit == nil || *next.Memory.Limit <= 0 || s.VM == nil {
		return nil
	}
	want := int((*next.Memory.Limit+mib-1)/mib) + l.overheadMiB
	have := s.VM.MemoryMiB()
	if want <= have {
		return nil
	}
	grow := want - have
	s.memoryMiB = have + (grow+hypervisor.MemoryBlockMiB-1)/hypervisor.MemoryBlockMiB*hypervisor.MemoryBlockMiB
	if err := s.applyResources(next); err != nil {
		s.memoryMiB = have
		return fmt.Errorf("raising the VM's host memory limit for %d MiB of RAM: %w", s.memoryMiB, err)
	}
	if _, err := s.VM.AddMemory(ctx, grow); err != nil {
		s.memoryMiB = have
		_ = s.applyResources(&l.res)
		return fmt.Errorf("the VM has %d MiB of RAM and needs %d MiB for a memory limit of %d bytes: %w", have, want, *next.Memory.Limit, err)
	}
	s.memoryMiB = s.VM.MemoryMiB()
	return nil
}

// merge is cur with the parts an update carries replaced by upd's non-nil ones.
func merge(cur specs.LinuxResources, upd *specs.LinuxResources) specs.LinuxResources {
	if upd.CPU != nil {
		cur.CPU = upd.CPU
	}
	if upd.Memory != nil {
		cur.Memory = upd.Memory
	}
	if upd.Pids != nil {
		cur.Pids = upd.Pids
	}
	if upd.BlockIO != nil {
		cur.BlockIO = upd.BlockIO
	}
	return cur
}

// changes tells whether upd sets a CPU, memory, pids or block I/O limit to another value than
// cur has. A zero value and an absent one are the same (Docker sends an update's resources in
// full, its create's with zero fields).
func changes(cur, upd *specs.LinuxResources) bool {
	pairs := []struct{ a, b any }{{cur.CPU, upd.CPU}, {cur.Memory, upd.Memory}, {cur.Pids, upd.Pids}, {cur.BlockIO, upd.BlockIO}}
	for _, p := range pairs {
		if reflect.ValueOf(p.b).IsNil() {
			continue
		}
		if !reflect.DeepEqual(pruned(p.a), pruned(p.b)) {
			return true
		}
	}
	return false
}

// pruned is v as JSON values without zero fields.
func pruned(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return v
	}
	return prune(out)
}

func prune(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e = prune(e); isZero(e) {
				delete(t, k)
			} else {
				t[k] = e
			}
		}
		if len(t) == 0 {
			return nil
		}
		return t
	case []any:
		if len(t) == 0 {
			return nil
		}
		for i := range t {
			t[i] = prune(t[i])
		}
		return t
	}
	return v
}

func isZero(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case float64:
		return t == 0
	case string:
		return t == ""
	case bool:
		return !t
	}
	return false
}

// guestCgroupParam tells the agent to give containers the cgroup layout of this host: Docker
// decides by the host's version what a container reads (cgroup v1 files, swap as memory+swap) and
// whether it gets a cgroup namespace.
func guestCgroupParam() string {
	if cgroups.Mode() == cgroups.Unified {
		return agentproto.CgroupParam + "=v2"
	}
	return agentproto.CgroupParam + "=v1"
}
