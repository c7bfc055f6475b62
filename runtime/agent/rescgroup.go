package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// resourceCgroups is the guest's cgroup v2 hierarchy, which holds one cgroup per container with
// the spec's CPU, memory, pids and I/O limits. Like the devices hierarchy it is mounted, opened
// and detached: the agent reaches it only through fd. A container sees its own cgroup through a
// cgroup namespace rooted there (containerinit mounts it), never the hierarchy above it.
//
// The devices controller stays on its cgroup v1 hierarchy (devcgroup.go): cgroup v2 has no
// devices controller file, and a kernel lets v1 and v2 hierarchies share the controllers out.
type resourceCgroups struct {
	fd int
}

// resourceControllers are the cgroup v2 controllers a container's limits use.
var resourceControllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

func openResourceCgroups() (*resourceCgroups, error) {
	dir, err := os.MkdirTemp("/run", "cgroup2-")
	if err != nil {
		return nil, fmt.Errorf("resource cgroup: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("cgroup2", dir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount the cgroup v2 hierarchy (is CONFIG_CGROUPS in the guest kernel?): %w", err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	uerr := unix.Unmount(dir, unix.MNT_DETACH)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup v2 hierarchy: %w", err)
	}
	if uerr != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("detach the cgroup v2 hierarchy: %w", uerr)
	}
	r := &resourceCgroups{fd: fd}
	if err := r.enableControllers(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

// enableControllers delegates the controllers the kernel has to the containers' cgroups.
func (r *resourceCgroups) enableControllers() error {
	have, err := r.read("", "cgroup.controllers")
	if err != nil {
		return err
	}
	available := map[string]bool{}
	for _, c := range strings.Fields(have) {
		available[c] = true
	}
	var enable []string
	for _, c := range resourceControllers {
		if available[c] {
			enable = append(enable, "+"+c)
		}
	}
	if len(enable) == 0 {
		return nil
	}
	return r.write("", "cgroup.subtree_control", strings.Join(enable, " "))
}

func (r *resourceCgroups) file(name, file string) string {
	if name == "" {
		return file
	}
	return name + "/" + file
}

func (r *resourceCgroups) read(name, file string) (string, error) {
	fd, err := unix.Openat(r.fd, r.file(name, file), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("open the cgroup's %s: %w", file, err)
	}
	f := os.NewFile(uintptr(fd), file)
	defer f.Close()
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil {
		return "", fmt.Errorf("read the cgroup's %s: %w", file, err)
	}
	return string(b[:n]), nil
}

func (r *resourceCgroups) write(name, file, line string) error {
	fd, err := unix.Openat(r.fd, r.file(name, file), unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open the cgroup's %s: %w", file, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(line)); err != nil {
		return fmt.Errorf("write %q to the cgroup's %s: %w", line, file, err)
	}
	return nil
}

// create makes the container's cgroup with the spec's limits and moves pid into it.
func (r *resourceCgroups) create(name string, res *specs.LinuxResources, pid int) ([]string, error) {
	if !cgroupName.MatchString(name) {
		return nil, fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	if err := unix.Mkdirat(r.fd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create the container's cgroup: %w", err)
	}
	notes, err := r.update(name, res)
	if err != nil {
		return notes, err
	}
	return notes, r.join(name, pid)
}

// update writes the limits that res sets; nil fields leave a limit as it is. It returns what
// could not be applied in the guest.
func (r *resourceCgroups) update(name string, res *specs.LinuxResources) ([]string, error) {
	if !cgroupName.MatchString(name) {
		return nil, fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	var notes []string
	for _, w := range cgroupV2Writes(res) {
		err := r.write(name, w.file, w.line)
		if err != nil && w.optional {
			notes = append(notes, err.Error())
			continue
		}
		if err != nil {
			return notes, err
		}
	}
	return notes, nil
}

// join moves pid into the container's cgroup; its children follow.
func (r *resourceCgroups) join(name string, pid int) error {
	return r.write(name, "cgroup.procs", strconv.Itoa(pid))
}

// remove deletes the container's cgroup and the cgroups it made below it (with writable cgroups).
func (r *resourceCgroups) remove(name string) error {
	if !cgroupName.MatchString(name) {
		return fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	return r.removeTree(name, 0)
}

// maxCgroupDepth bounds the recursion over the cgroups a container made below its own.
const maxCgroupDepth = 32

func (r *resourceCgroups) removeTree(rel string, depth int) error {
	if depth > maxCgroupDepth {
		return fmt.Errorf("cgroup %s is nested deeper than %d", rel, maxCgroupDepth)
	}
	fd, err := unix.Openat(r.fd, rel, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("open cgroup %s: %w", rel, err)
	}
	dir := os.NewFile(uintptr(fd), rel)
	entries, err := dir.ReadDir(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("list cgroup %s: %w", rel, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := r.removeTree(rel+"/"+e.Name(), depth+1); err != nil {
				return err
			}
		}
	}
	if err := unix.Unlinkat(r.fd, rel, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", rel, err)
	}
	return nil
}

// cgroupWrite is one value written to a file of a container's cgroup.
type cgroupWrite struct {
	file, line string
	// optional writes may fail without failing the request: io.weight needs an I/O cost model the
	// guest may not have, a host cpuset may name CPUs the guest does not have.
	optional bool
}

// cgroupV2Writes turns the spec's resources into cgroup v2 writes, with runc's conversions of
// cgroup v1 values (CPU shares to weight, swap as memory+swap to swap alone, blkio weight to io
// weight).
func cgroupV2Writes(res *specs.LinuxResources) (writes []cgroupWrite) {
	if res == nil {
		return nil
	}
	add := func(file, line string) { writes = append(writes, cgroupWrite{file: file, line: line}) }
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			add("cpu.weight", strconv.FormatUint(cpuWeight(*c.Shares), 10))
		}
		if line, ok := cpuMax(c.Quota, c.Period); ok {
			add("cpu.max", line)
		}
		// The guest numbers its vCPUs from 0: a host cpuset may name CPUs it does not have (the
		// host pins the VM to the set itself).
		if c.Cpus != "" {
			writes = append(writes, cgroupWrite{file: "cpuset.cpus", line: c.Cpus, optional: true})
		}
		if c.Mems != "" {
			writes = append(writes, cgroupWrite{file: "cpuset.mems", line: c.Mems, optional: true})
		}
	}
	if m := res.Memory; m != nil {
		if m.Reservation != nil && *m.Reservation != 0 {
			add("memory.low", limitValue(*m.Reservation))
		}
		if m.Limit != nil && *m.Limit != 0 {
			add("memory.max", limitValue(*m.Limit))
		}
		if line, ok := swapMax(m.Swap, m.Limit); ok {
			add("memory.swap.max", line)
		}
	}
	if p := res.Pids; p != nil {
		line := "max"
		if p.Limit != nil && *p.Limit > 0 {
			line = strconv.FormatInt(*p.Limit, 10)
		}
		add("pids.max", line)
	}
	if b := res.BlockIO; b != nil {
		if b.Weight != nil && *b.Weight != 0 {
			writes = append(writes, cgroupWrite{file: "io.weight", line: "default " + strconv.FormatUint(ioWeight(*b.Weight), 10), optional: true})
		}
		// Throttles (ThrottleReadBpsDevice, ...) are left out on purpose: they name host block
		// devices by number, and a guest device with the same number is another device. The host
		// applies them to the VM's cgroup, where QEMU does the container's I/O.
	}
	return writes
}

// cpuWeight maps cgroup v1 shares [2, 262144] onto cgroup v2 weight [1, 10000] as runc does.
func cpuWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// ioWeight maps blkio weight [10, 1000] onto io weight [1, 10000] as runc does.
func ioWeight(w uint16) uint64 {
	v := uint64(min(max(w, 10), 1000))
	return 1 + (v-10)*9999/990
}

// cpuMax is cpu.max's "quota period": no quota (or a negative one) is "max"; a missing period is
// the kernel's default.
func cpuMax(quota *int64, period *uint64) (string, bool) {
	if quota == nil && period == nil {
		return "", false
	}
	q := "max"
	if quota != nil && *quota > 0 {
		q = strconv.FormatInt(*quota, 10)
	}
	p := uint64(100000)
	if period != nil && *period != 0 {
		p = *period
	}
	return q + " " + strconv.FormatUint(p, 10), true
}

// limitValue is a byte limit, -1 being "max".
func limitValue(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// swapMax converts the spec's memory+swap limit into cgroup v2's swap-only limit.
func swapMax(swap, limit *int64) (string, bool) {
	if swap == nil || *swap == 0 {
		return "", false
	}
	if *swap < 0 {
		return "max", true
	}
	if limit == nil || *limit <= 0 {
		// memory+swap without a memory limit cannot be split; runc refuses it, Docker never sends it.
		return "", false
	}
	return strconv.FormatInt(max(*swap-*limit, 0), 10), true
}
