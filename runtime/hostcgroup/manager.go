package hostcgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const unifiedMount = "/sys/fs/cgroup"

// Manager owns one container's host cgroup. The cgroup is created when the first process is
// added (systemd needs a process to create a scope), after the record that lets Cleanup remove
// it has been written. Its methods may be called from several goroutines.
type Manager struct {
	state     string // the record's file
	mu        sync.Mutex
	rec       record
	resources *specs.LinuxResources
	v1        cgroup1.Cgroup
	v2        *cgroup2.Manager
}

// record is what Cleanup needs to remove the cgroup after the shim died.
type record struct {
	Path
	// Created is false when the cgroup existed before: it belongs to someone else and is left
	// in place.
	Created bool `json:"created"`
	// Systemd is true when a systemd scope was started for it.
	Systemd bool `json:"systemd,omitempty"`
}

// New prepares the cgroup at p with the given limits (see Resources). statePath is a file in a
// directory only the shim writes, where the cgroup is recorded for Cleanup.
func New(p Path, resources *specs.LinuxResources, statePath string) *Manager {
	if resources == nil {
		resources = &specs.LinuxResources{}
	}
	return &Manager{state: statePath, rec: record{Path: p}, resources: resources}
}

// Dir is the cgroup's path below each hierarchy's root.
func (m *Manager) Dir() string { return m.rec.Dir }

// Add moves pid (all its threads) into the cgroup, creating the cgroup on the first call.
func (m *Manager) Add(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if pid <= 0 {
		return fmt.Errorf("invalid pid %d", pid)
	}
	if m.v1 == nil && m.v2 == nil {
		return m.create(pid)
	}
	return m.addProc(pid)
}

// Update applies new limits to the cgroup (those Resources computes). Before the first Add it
// only replaces the limits the cgroup will be created with.
func (m *Manager) Update(resources *specs.LinuxResources) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if resources == nil {
		resources = &specs.LinuxResources{}
	}
	m.resources = resources
	switch {
	case m.v1 != nil:
		return wrap(m.rec.Dir, m.updateV1(resources))
	case m.v2 != nil:
		return wrap(m.rec.Dir, m.v2.Update(cgroup2.ToResources(resources)))
	}
	return nil
}

func (m *Manager) create(pid int) error {
	unified := cgroups.Mode() == cgroups.Unified
	m.rec.Systemd = m.rec.Unit != "" && systemdRunning()
	m.rec.Created = m.rec.Systemd || !exists(m.rec.Dir, unified)
	if err := m.save(); err != nil {
		return err
	}
	if m.rec.Systemd {
		if err := startScope(m.rec.Slice, m.rec.Unit, pid); err != nil {
			return fmt.Errorf("creating the systemd scope %s: %w", m.rec.Unit, err)
		}
	}
	var err error
	if unified {
		m.v2, err = cgroup2.NewManager(unifiedMount, m.rec.Dir, cgroup2.ToResources(m.resources))
	} else {
		m.v1, err = cgroup1.New(cgroup1.StaticPath(m.rec.Dir), withoutWeight(m.resources))
		if err == nil {
			err = m.setBFQWeight(m.resources)
		}
	}
	if err != nil {
		return wrap(m.rec.Dir, err)
	}
	return m.addProc(pid)
}

// The v1 block I/O weight is blkio.weight with CFQ but blkio.bfq.weight on kernels that only
// have BFQ, which containerd/cgroups does not know: it is written here instead.
const (
	blkioRoot      = unifiedMount + "/blkio"
	blkioWeight    = "blkio.weight"
	blkioBFQWeight = "blkio.bfq.weight"
)

func (m *Manager) updateV1(r *specs.LinuxResources) error {
	if err := m.v1.Update(withoutWeight(r)); err != nil {
		return err
	}
	return m.setBFQWeight(r)
}

// withoutWeight drops the block I/O weight when the kernel has no blkio.weight.
func withoutWeight(r *specs.LinuxResources) *specs.LinuxResources {
	if r.BlockIO == nil || r.BlockIO.Weight == nil {
		return r
	}
	if _, err := os.Stat(filepath.Join(blkioRoot, blkioWeight)); err == nil {
		return r
	}
	c := *r
	c.BlockIO = nil
	return &c
}

// setBFQWeight writes the weight to blkio.bfq.weight where blkio.weight is missing.
func (m *Manager) setBFQWeight(r *specs.LinuxResources) error {
	if r.BlockIO == nil || r.BlockIO.Weight == nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(blkioRoot, blkioWeight)); err == nil {
		return nil
	}
	file := filepath.Join(blkioRoot, m.rec.Dir, blkioBFQWeight)
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("--blkio-weight: this kernel has neither %s nor %s", blkioWeight, blkioBFQWeight)
	}
	return os.WriteFile(file, []byte(strconv.FormatUint(uint64(*r.BlockIO.Weight), 10)), 0)
}

func (m *Manager) addProc(pid int) error {
	if m.v2 != nil {
		return wrap(m.rec.Dir, m.v2.AddProc(uint64(pid)))
	}
	return wrap(m.rec.Dir, m.v1.AddProc(uint64(pid)))
}

func (m *Manager) save() error {
	b, err := json.Marshal(m.rec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(m.state, b, 0o600); err != nil {
		return fmt.Errorf("recording the host cgroup: %w", err)
	}
	return nil
}

// Cleanup removes the cgroup recorded in statePath if this runtime created it, once its
// processes are gone, and then the record. A missing record or cgroup is not an error. Safe to
// call more than once.
func Cleanup(statePath string) error {
	b, err := os.ReadFile(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the host cgroup record: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("host cgroup record %s: %w", statePath, err)
	}
	if rec.Created {
		if err := remove(rec); err != nil {
			return err
		}
	}
	if err := os.Remove(statePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// remove deletes a cgroup we created. The record is re-validated: it is only ever written by the
// shim, but a path that reaches rmdir must be one ParsePath would give.
func remove(rec record) error {
	dir, err := cleanDir(rec.Dir)
	if err != nil || dir != rec.Dir {
		return fmt.Errorf("host cgroup record names %q: refusing to remove it", rec.Dir)
	}
	var errs []error
	if cgroups.Mode() == cgroups.Unified {
		if _, err := os.Stat(filepath.Join(unifiedMount, dir)); err == nil {
			mgr, err := cgroup2.Load(dir)
			if err == nil {
				err = mgr.Delete()
			}
			errs = append(errs, wrap(dir, err))
		}
	} else {
		cg, err := cgroup1.Load(cgroup1.StaticPath(dir))
		switch {
		case errors.Is(err, cgroup1.ErrCgroupDeleted):
		case err != nil:
			errs = append(errs, wrap(dir, err))
		default:
			errs = append(errs, wrap(dir, cg.Delete()))
		}
	}
	if rec.Systemd && rec.Unit != "" {
		if !unitPart.MatchString(rec.Unit) {
			return fmt.Errorf("host cgroup record names the unit %q: refusing to stop it", rec.Unit)
		}
		errs = append(errs, stopScope(rec.Unit))
	}
	return errors.Join(errs...)
}

// exists reports whether the cgroup directory is there already (in the cpu hierarchy on v1, which
// every container runtime creates).
func exists(dir string, unified bool) bool {
	root := filepath.Join(unifiedMount, "cpu")
	if unified {
		root = unifiedMount
	}
	_, err := os.Stat(filepath.Join(root, dir))
	return err == nil
}

func wrap(dir string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("host cgroup %s: %w", dir, err)
}
