// Package hypervisor runs one QEMU virtual machine per container through
// govmm: it builds the command line (fast-boot kernel, virtio-serial agent
// channel, 9p or virtio-fs shares), starts QEMU confined (confine.go) inside
// a network namespace, watches it through a pidfd, drives it over QMP, and tears down
// everything it started, also on behalf of a shim that died.
package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Share types.
const (
	Share9P       = "9p"
	ShareVirtiofs = "virtiofs"
)

// Accelerators, as the caller resolved them.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Share is a host directory exported to the guest under a mount tag.
type Share struct {
	Tag      string // mount tag the guest mounts by (mount -t 9p <tag> / mount -t virtiofs <tag>)
	HostPath string // absolute host directory
	Type     string // Share9P or ShareVirtiofs
}

// Config describes one VM.
type Config struct {
	ID           string // container id: names the VM in QEMU's -name
	QEMUPath     string
	Kernel       string
	Initrd       string
	Firmware     string // -bios; "" means QEMU's default firmware
	MachineType  string // "q35"
	Accelerator  string // AccelKVM or AccelTCG, already resolved by the caller
	KernelParams []string
	VCPUs        int
	MemoryMiB    int
	// MaxMemoryMiB, when above MemoryMiB, lets AddMemory hot-plug RAM up to it (docker update
	// --memory). 0: the VM's RAM is fixed.
	MaxMemoryMiB int
	// StateDir is the VM's own directory, created 0700 by Start and removed
	// by Stop/Cleanup. It must be absent or empty when Start is called.
	StateDir string
	Shares   []Share
	// Blocks are raw image files attached as virtio-blk disks (blockdev.go).
	Blocks         []Block
	VirtiofsDaemon string
	// NetNSPath is the network namespace QEMU runs in. "" creates a new
	// one, owned by QEMU: Docker then moves the container's veth into
	// /proc/<PID>/ns/net.
	NetNSPath string
	// CacheDir holds what is learnt once per QEMU binary (its -sandbox
	// options); "" probes at every start.
	CacheDir string
	// Debug drops "quiet" from the guest command line and logs the launch.
	Debug bool
	// Placed, if set, is called with the pid of every process Start spawns (virtiofsd, QEMU)
	// right after it exists, e.g. to move it into the container's cgroup; QEMU is started
	// with its vCPUs stopped and resumed only once Placed returned, so no guest code runs
	// before. An error fails Start.
	Placed func(pid int) error
	// TCGTranslationMiB, under TCG, bounds a template's or a clone's translation buffer (QEMU's
	// -accel tcg,tb-size; 0: QEMU's default, 1 GiB reserved, kept as touched). QEMU keeps every
	// page of it it wrote: a clone's snapshot holds no translated code, so each clone translates
	// again all the guest code it runs (~37 MiB while a container starts) and holds it while
	// idle. A smaller buffer is flushed when full and what runs after is translated again
	// (~0.1 s per flush under TCG). It is not in the migration stream: a clone may differ from
	// its template. Measured, 10 idle clones side by side: QEMU 72.5 MiB PSS each by default,
	// 63.2 with 32, 59.8 with 28, 54.9 with 24; docker run -d 1.07 s, 1.19, 1.18, 1.29.
	TCGTranslationMiB int
	// Nice is the scheduling priority QEMU starts with (0: the caller's thread's, usually 0; up
	// to 19): a VM that waits for a container runs at a low one (SetNice changes it later).
	Nice int
	// Logf, if set, receives diagnostic messages (with Debug, QEMU's
	// command line and govmm's own log).
	Logf func(format string, args ...any)

	// Set by StartTemplate and Restore (template.go): the RAM in a file, and for a clone the
	// device state to load before the guest runs.
	memory   *memoryFile
	incoming *os.File
}

// Names of the files in a VM's state directory. Sockets have short names:
// unix socket paths are limited to 107 bytes.
const (
	qmpSocketName   = "qmp.sock"
	agentSocketName = "agent.sock"
	pidFileName     = "qemu.pid"
	consoleName     = "console.log"
	consoleSockName = "console.sock"
	qemuLogName     = "qemu.log"
)

// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the terminating NUL.
const maxSocketPath = 107

// layout names every file of a VM's state directory.
type layout struct {
	dir, qmp, agent, pid, console, consoleSock, log string
	root                                            string // QEMU's root directory, in its own mount namespace only
}

func newLayout(dir string) layout {
	return layout{
		dir:         dir,
		qmp:         filepath.Join(dir, qmpSocketName),
		agent:       filepath.Join(dir, agentSocketName),
		pid:         filepath.Join(dir, pidFileName),
		console:     filepath.Join(dir, consoleName),
		consoleSock: filepath.Join(dir, consoleSockName),
		log:         filepath.Join(dir, qemuLogName),
		root:        filepath.Join(dir, "root"),
	}
}

// virtiofsd files of the i-th virtio-fs share.
func (l layout) vfsSocket(i int) string { return filepath.Join(l.dir, "vfs"+strconv.Itoa(i)+".sock") }
func (l layout) vfsPid(i int) string    { return filepath.Join(l.dir, "vfs"+strconv.Itoa(i)+".pid") }
func (l layout) vfsLog(i int) string    { return filepath.Join(l.dir, "vfs"+strconv.Itoa(i)+".log") }

// sockets lists every socket path the VM will use.
func (l layout) sockets(shares []Share) []string {
	s := []string{l.qmp, l.agent, l.consoleSock}
	for i, sh := range shares {
		if sh.Type == ShareVirtiofs {
			s = append(s, l.vfsSocket(i))
		}
	}
	return s
}

// logf calls c.Logf when set.
func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// String identifies the VM in messages.
func (c *Config) String() string { return fmt.Sprintf("VM %s", c.ID) }
