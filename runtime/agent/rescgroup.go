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

// containerCgroups are the guest's cgroup hierarchies that hold one cgroup per container with
// the spec's CPU, memory, pids and I/O limits: cgroup v2, or cgroup v1 when the host uses v1
// (a container sees the layout runc would give it on that host). Like the devices hierarchy they
// are mounted, opened and detached: the agent reaches them only through descriptors. A container
// sees its own cgroup through mounts made in a cgroup namespace rooted there (containerinit).
type containerCgroups interface {
	// create makes the container's cgroup with the limits of res and moves pid into it; it
	// returns what could not be applied in the guest.
	create(name string, res *specs.LinuxResources, pid int) ([]string, error)
	// update writes the limits that res sets; nil fields leave a limit as it is.
	update(name string, res *specs.LinuxResources) ([]string, error)
	// join moves pid into the container's cgroup; its children follow.
	join(name string, pid int) error
	// remove deletes the container's cgroup and those it made below it (writable cgroups).
	remove(name string) error
	// v1Hierarchies are the cgroup v1 hierarchies containerinit mounts (nil: cgroup v2).
	v1Hierarchies() []string
}

// cgroupDir is one mounted, opened and detached cgroup hierarchy.
type cgroupDir struct {
	fd int
}

func openCgroupDir(fstype, data string) (*cgroupDir, error) {
	dir, err := os.MkdirTemp("/run", "cgroup-")
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", data, err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("cgroup", dir, fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return nil, fmt.Errorf("mount the %s hierarchy %q (is it in the guest kernel?): %w", fstype, data, err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	uerr := unix.Unmount(dir, unix.MNT_DETACH)
	if err != nil {
		return nil, fmt.Errorf("open the %s hierarchy %q: %w", fstype, data, err)
	}
	if uerr != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("detach the %s hierarchy %q: %w", fstype, data, uerr)
	}
	return &cgroupDir{fd: fd}, nil
}

func (d *cgroupDir) close() { unix.Close(d.fd) }

func cgroupFile(name, file string) string {
	if name == "" {
		return file
	}
	return name + "/" + file
}

func (d *cgroupDir) read(name, file string) (string, error) {
	fd, err := unix.Openat(d.fd, cgroupFile(name, file), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
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

func (d *cgroupDir) write(name, file, line string) error {
	fd, err := unix.Openat(d.fd, cgroupFile(name, file), unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open the cgroup's %s: %w", file, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(line)); err != nil {
		return fmt.Errorf("write %q to the cgroup's %s: %w", line, file, err)
	}
	return nil
}

func (d *cgroupDir) mkdir(name string) error {
	if !cgroupName(name) {
		return fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	if err := unix.Mkdirat(d.fd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create the container's cgroup: %w", err)
	}
	return nil
}

// maxCgroupDepth bounds the recursion over the cgroups a container made below its own.
const maxCgroupDepth = 32

func (d *cgroupDir) removeTree(rel string, depth int) error {
	if depth > maxCgroupDepth {
		return fmt.Errorf("cgroup %s is nested deeper than %d", rel, maxCgroupDepth)
	}
	fd, err := unix.Openat(d.fd, rel, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
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
			if err := d.removeTree(rel+"/"+e.Name(), depth+1); err != nil {
				return err
			}
		}
	}
	if err := unix.Unlinkat(d.fd, rel, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", rel, err)
	}
	return nil
}

// applyWrites writes ws to the container's cgroup in dir(w.hierarchy). Optional writes that fail
// become notes. A pair marked swapFirst is retried in the other order once (cgroup v1 refuses a
// memory limit above memory+swap and the reverse).
func applyWrites(name string, ws []cgroupWrite, dir func(hierarchy string) *cgroupDir) ([]string, error) {
	var notes []string
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		d := dir(w.hierarchy)
		if d == nil {
			notes = append(notes, fmt.Sprintf("%s: the guest has no %s hierarchy", w.file, w.hierarchy))
			continue
		}
		err := d.write(name, w.file, w.line)
		if err != nil && w.swapWithNext && i+1 < len(ws) {
			next := ws[i+1]
			if err = d.write(name, next.file, next.line); err == nil {
				err = d.write(name, w.file, w.line)
			}
			i++
		}
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

// resourceCgroups is the guest's cgroup v2 hierarchy. The devices controller stays on its cgroup
// v1 hierarchy (devcgroup.go): cgroup v2 has no devices controller file, and a kernel lets v1 and
// v2 hierarchies share the controllers out.
type resourceCgroups struct {
	root *cgroupDir
}

// resourceControllers are the cgroup v2 controllers a container's limits use.
var resourceControllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

func openResourceCgroups() (*resourceCgroups, error) {
	d, err := openCgroupDir("cgroup2", "")
	if err != nil {
		return nil, err
	}
	r := &resourceCgroups{root: d}
	if err := r.enableControllers(); err != nil {
		d.close()
		return nil, err
	}
	return r, nil
}

// enableControllers delegates the controllers the kernel has to the containers' cgroups.
func (r *resourceCgroups) enableControllers() error {
	have, err := r.root.read("", "cgroup.controllers")
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
	return r.root.write("", "cgroup.subtree_control", strings.Join(enable, " "))
}

func (r *resourceCgroups) create(name string, res *specs.LinuxResources, pid int) ([]string, error) {
	if err := r.root.mkdir(name); err != nil {
		return nil, err
	}
	notes, err := r.update(name, res)
	if err != nil {
		return notes, err
	}
	return notes, r.join(name, pid)
}

func (r *resourceCgroups) update(name string, res *specs.LinuxResources) ([]string, error) {
	if !cgroupName(name) {
		return nil, fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	return applyWrites(name, cgroupV2Writes(res), func(string) *cgroupDir { return r.root })
}

func (r *resourceCgroups) join(name string, pid int) error {
	return r.root.write(name, "cgroup.procs", strconv.Itoa(pid))
}

func (r *resourceCgroups) remove(name string) error {
	if !cgroupName(name) {
		return fmt.Errorf("container id %q cannot name a cgroup", name)
	}
	return r.root.removeTree(name, 0)
}

func (r *resourceCgroups) v1Hierarchies() []string { return nil }

// cgroupWrite is one value written to a file of a container's cgroup.
type cgroupWrite struct {
	hierarchy  string // cgroup v1: the hierarchy's mount options ("memory", "cpu,cpuacct")
	file, line string
	// optional writes may fail without failing the request: io.weight needs an I/O cost model the
	// guest may not have, a host cpuset may name CPUs the guest does not have.
	optional bool
	// swapWithNext: when this write fails, write the next one first and retry.
	swapWithNext bool
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
