package agent

import (
	"errors"
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v1HierarchyNames are the cgroup v1 hierarchies a container's limits use, by mount options, as
// systemd lays them out on a cgroup v1 host (cpu and cpuacct share one).
var v1HierarchyNames = []string{"cpu,cpuacct", "cpuset", "memory", "pids", "blkio"}

// v1Cgroups are the guest's cgroup v1 hierarchies, for a host on cgroup v1.
type v1Cgroups struct {
	names []string
	dirs  map[string]*cgroupDir
}

func openV1Cgroups(log *Logger) (*v1Cgroups, error) {
	c := &v1Cgroups{dirs: map[string]*cgroupDir{}}
	for _, h := range v1HierarchyNames {
		d, err := openCgroupDir("cgroup", h)
		if err != nil {
			log.Errorf("cgroup v1: %v", err)
			continue
		}
		c.names = append(c.names, h)
		c.dirs[h] = d
	}
	if len(c.names) == 0 {
		return nil, errors.New("the guest kernel has none of the cgroup v1 controllers cpu, cpuset, memory, pids, blkio")
	}
	if d := c.dirs["cpuset"]; d != nil {
		// A new cpuset cgroup has no CPUs and takes no process until it has some: copy the parent's.
		if err := d.write("", "cgroup.clone_children", "1"); err != nil {
			log.Errorf("cgroup v1: %v", err)
		}
	}
	return c, nil
}

func (c *v1Cgroups) create(name string, res *specs.LinuxResources, pid int) ([]string, error) {
	for _, h := range c.names {
		if err := c.dirs[h].mkdir(name); err != nil {
			return nil, fmt.Errorf("%s: %w", h, err)
		}
	}
	notes, err := c.update(name, res)
	if err != nil {
		return notes, err
	}
	return notes, c.join(name, pid)
}

func (c *v1Cgroups) update(name string, res *specs.LinuxResources) ([]string, error) {
	if !cgroupName(name) {
		return nil, fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	return applyWrites(name, cgroupV1Writes(res), func(h string) *cgroupDir { return c.dirs[h] })
}

func (c *v1Cgroups) join(name string, pid int) error {
	for _, h := range c.names {
		if err := c.dirs[h].write(name, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("%s: %w", h, err)
		}
	}
	return nil
}

func (c *v1Cgroups) remove(name string) error {
	if !cgroupName(name) {
		return fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	var errs []error
	for _, h := range c.names {
		errs = append(errs, c.dirs[h].removeTree(name, 0))
	}
	return errors.Join(errs...)
}

func (c *v1Cgroups) v1Hierarchies() []string { return append([]string(nil), c.names...) }

// cgroupV1Writes turns the spec's resources into cgroup v1 writes, as runc does.
func cgroupV1Writes(res *specs.LinuxResources) (writes []cgroupWrite) {
	if res == nil {
		return nil
	}
	add := func(h, file, line string) {
		writes = append(writes, cgroupWrite{hierarchy: h, file: file, line: line})
	}
	if c := res.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			add("cpu,cpuacct", "cpu.shares", strconv.FormatUint(*c.Shares, 10))
		}
		if c.Period != nil && *c.Period != 0 {
			// A period shorter than the current quota allows is refused: then the quota goes first.
			writes = append(writes, cgroupWrite{hierarchy: "cpu,cpuacct", file: "cpu.cfs_period_us", line: strconv.FormatUint(*c.Period, 10), swapWithNext: c.Quota != nil})
		}
		if c.Quota != nil {
			q := *c.Quota
			if q <= 0 {
				q = -1
			}
			add("cpu,cpuacct", "cpu.cfs_quota_us", strconv.FormatInt(q, 10))
		}
		if c.Cpus != "" {
			writes = append(writes, cgroupWrite{hierarchy: "cpuset", file: "cpuset.cpus", line: c.Cpus, optional: true})
		}
		if c.Mems != "" {
			writes = append(writes, cgroupWrite{hierarchy: "cpuset", file: "cpuset.mems", line: c.Mems, optional: true})
		}
	}
	if m := res.Memory; m != nil {
		if m.Reservation != nil && *m.Reservation != 0 {
			add("memory", "memory.soft_limit_in_bytes", strconv.FormatInt(*m.Reservation, 10))
		}
		hasSwap := m.Swap != nil && *m.Swap != 0
		if m.Limit != nil && *m.Limit != 0 {
			// The memory limit may not exceed memory+swap: when it would, memory+swap goes first.
			writes = append(writes, cgroupWrite{hierarchy: "memory", file: "memory.limit_in_bytes", line: strconv.FormatInt(*m.Limit, 10), swapWithNext: hasSwap})
		}
		if hasSwap {
			// memsw exists only with swap accounting in the guest kernel.
			writes = append(writes, cgroupWrite{hierarchy: "memory", file: "memory.memsw.limit_in_bytes", line: strconv.FormatInt(*m.Swap, 10), optional: true})
		}
	}
	if p := res.Pids; p != nil {
		line := "max"
		if p.Limit != nil && *p.Limit > 0 {
			line = strconv.FormatInt(*p.Limit, 10)
		}
		add("pids", "pids.max", line)
	}
	if b := res.BlockIO; b != nil && b.Weight != nil && *b.Weight != 0 {
		// Throttles are the host's business, as with cgroup v2 (cgroupV2Writes).
		writes = append(writes, cgroupWrite{hierarchy: "blkio", file: "blkio.weight", line: strconv.FormatUint(uint64(*b.Weight), 10), optional: true})
	}
	return writes
}
