// Package agentproto is the protocol between the host (the containerd shim) and
// the guest agent (PID 1 inside the VM), and the host-side client for it.
//
// One yamux session runs over the VM's control channel (a virtio-serial port).
// The host is the yamux client and opens every stream; the agent accepts.
// A request stream carries one JSON line from the host (a Request) and one JSON
// line back (a Response), then both sides close. A stdio stream starts with a
// Request whose Op is OpStdio, the agent answers with one Response line, and
// from then on the stream carries raw bytes; a yamux half-close is EOF.
package agentproto

import (
	"fmt"
	"path"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ProtocolVersion changes whenever a host and an agent built from different
// versions could misunderstand each other. The agent's answer to the handshake carries it
// (ReadyMagic), and Ping reports it. 2: the host compiles seccomp profiles (Request.Seccomp).
const ProtocolVersion = 2

// Operations carried in Request.Op.
const (
	OpPing            = "ping"
	OpCreateContainer = "create"
	OpStdio           = "stdio"
	OpStart           = "start"
	OpExec            = "exec"
	OpWait            = "wait"
	OpSignal          = "signal"
	OpCloseStdin      = "closestdin"
	OpResizePty       = "resize"
	OpPids            = "pids"
	OpStats           = "stats"
	OpRemoveContainer = "remove"
	OpShutdown        = "shutdown"
)

// Stdio stream names carried in Request.Stream.
const (
	StreamStdin  = "stdin"
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Share types the agent can mount.
const (
	Share9P       = "9p"
	ShareVirtioFS = "virtiofs"
	// ShareBlock is a virtio-blk disk whose serial is the share's Tag, holding a file system of
	// type FSType: a direct-assigned volume.
	ShareBlock = "block"
)

// AgentInfo is what Ping answers.
type AgentInfo struct {
	Version         string `json:"version"`
	KernelRelease   string `json:"kernelRelease"`
	ProtocolVersion int    `json:"protocolVersion"`
	// Preloaded: the module groups the kernel command line names (ModulesParam) are loaded.
	Preloaded bool `json:"preloaded,omitempty"`
}

// Share is a host directory exported to the guest (virtio-9p or virtio-fs)
// that the agent mounts at GuestPath before it creates the container.
type Share struct {
	Type      string `json:"type"` // Share9P or ShareVirtioFS
	Tag       string `json:"tag"`  // the mount tag given to QEMU
	GuestPath string `json:"guestPath"`
	FSType    string `json:"fsType,omitempty"`   // ShareBlock only: ext4 or xfs
	ReadOnly  bool   `json:"readOnly,omitempty"` // ShareBlock only: mount read-only
	// Subdir, if set, names the directory of the share that goes at GuestPath: the share itself
	// is mounted elsewhere (ShareRootsDir). A VM made before its container (a pooled clone)
	// exports a directory that only gets the container's files later, below it.
	Subdir string `json:"subdir,omitempty"`
}

// ShareRootsDir is where the agent mounts a share given with a Subdir, under its tag.
const ShareRootsDir = "/run/kata-containers/share-roots"

// blockFSTypes are the file systems the agent mounts from a block share.
var blockFSTypes = map[string]bool{"ext4": true, "xfs": true}

// Validate rejects a share the agent must not mount: an unknown type, an empty
// or odd tag, or a mount point that is relative, unclean or the guest's root.
func (s Share) Validate() error {
	if s.Type != Share9P && s.Type != ShareVirtioFS && s.Type != ShareBlock {
		return fmt.Errorf("share %q: type %q is not supported: use %q, %q or %q", s.Tag, s.Type, Share9P, ShareVirtioFS, ShareBlock)
	}
	if s.Type == ShareBlock && !blockFSTypes[s.FSType] {
		return fmt.Errorf("block share %q: file system %q is not supported: use ext4 or xfs", s.Tag, s.FSType)
	}
	if !isTag(s.Tag) {
		return fmt.Errorf("share tag %q is invalid: use 1-36 characters from [A-Za-z0-9_.-]", s.Tag)
	}
	if err := ValidGuestPath(s.GuestPath); err != nil {
		return fmt.Errorf("share %q: %w", s.Tag, err)
	}
	if s.Subdir != "" && (s.Type == ShareBlock || !isTag(s.Subdir) || s.Subdir == "." || s.Subdir == "..") {
		return fmt.Errorf("share %q: subdir %q must be one name of 1-36 characters from [A-Za-z0-9_.-], on a 9p or virtio-fs share", s.Tag, s.Subdir)
	}
	return nil
}

// ValidGuestPath accepts an absolute, clean path other than "/".
func ValidGuestPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("guest path %q must be absolute, clean and not \"/\"", p)
	}
	return nil
}

// CreateContainerRequest describes a container to prepare in the guest.
type CreateContainerRequest struct {
	ID string
	// Spec is the OCI spec. Root.Path and the sources of bind mounts are
	// guest paths: the shim rewrites host paths under a Share's GuestPath.
	Spec *specs.Spec
	// Shares are mounted by the agent before anything else.
	Shares []Share
	// Devices are host block devices attached as virtio-blk disks: the agent gives the
	// container the guest's node for each, in place of the host's numbers in the spec.
	Devices []Device
	// Seccomp is the container's seccomp filter, compiled by the host from the profile, which
	// Spec then leaves out (nil: no filter, or the agent compiles Spec's profile).
	Seccomp *Seccomp
}

// Seccomp is a container's seccomp filter compiled by the host: a classic BPF program (the array
// of struct sock_filter, 8 bytes each, in the byte order of host and guest, which share an
// architecture) and the flags of seccomp(2). The host compiles a profile (most of a Docker spec) at
// native speed before the VM boots; the guest would compile it on one emulated vCPU, on the
// create's critical path. The agent checks the program's size and the kernel checks the rest
// when the container's process loads it.
type Seccomp struct {
	Program []byte `json:"program"`
	Flags   uint64 `json:"flags,omitempty"`
}

// Device is a host block device (docker run --device) that reaches the guest as the virtio-blk
// disk whose serial is Tag. The spec names it by the host's major and minor numbers, in
// Linux.Devices at ContainerPath and in the device cgroup rules; the agent rewrites both with the
// guest's numbers for the disk.
type Device struct {
	Tag           string `json:"tag"`
	ContainerPath string `json:"containerPath"`
	HostMajor     int64  `json:"hostMajor"`
	HostMinor     int64  `json:"hostMinor"`
}

// Validate rejects a device the agent cannot map: an odd tag or a path outside /dev.
func (d Device) Validate() error {
	if !isTag(d.Tag) {
		return fmt.Errorf("device tag %q is invalid: use 1-36 characters from [A-Za-z0-9_.-]", d.Tag)
	}
	if err := ValidGuestPath(d.ContainerPath); err != nil || !strings.HasPrefix(d.ContainerPath, "/dev/") {
		return fmt.Errorf("device %q: container path %q must be a clean absolute path under /dev", d.Tag, d.ContainerPath)
	}
	return nil
}

// Stats is a simple resource snapshot of the guest.
type Stats struct {
	MemoryUsageBytes uint64 `json:"memoryUsageBytes"` // MemTotal - MemAvailable
	MemoryLimitBytes uint64 `json:"memoryLimitBytes"` // MemTotal
	CPUUsageNs       uint64 `json:"cpuUsageNs"`       // non-idle CPU time of the guest since boot
	Pids             int    `json:"pids"`             // processes in the container
	OOMKills         uint64 `json:"oomKills"`         // the guest kernel's oom_kill counter
}

// Request is the first JSON line of every stream.
type Request struct {
	Op        string         `json:"op"`
	Container string         `json:"container,omitempty"`
	Exec      string         `json:"exec,omitempty"`
	Stream    string         `json:"stream,omitempty"`
	Spec      *specs.Spec    `json:"spec,omitempty"`
	Shares    []Share        `json:"shares,omitempty"`
	Devices   []Device       `json:"devices,omitempty"`
	Process   *specs.Process `json:"process,omitempty"`
	Signal    int            `json:"signal,omitempty"`
	All       bool           `json:"all,omitempty"`
	Width     uint32         `json:"width,omitempty"`
	Height    uint32         `json:"height,omitempty"`
	Network   *Network       `json:"network,omitempty"` // OpNetwork
	// Resources are the container's new limits (OpUpdateContainer).
	Resources *specs.LinuxResources `json:"resources,omitempty"`
	// Restored reseeds a VM restored from a template (OpRestored).
	Restored *Restored `json:"restored,omitempty"`
	// Seccomp is the container's compiled filter (OpCreateContainer, OpWarm): Spec then carries no
	// seccomp profile.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
}

// Response is the agent's one JSON line answer.
type Response struct {
	Error      string     `json:"error,omitempty"`
	Info       *AgentInfo `json:"info,omitempty"`
	Pid        int        `json:"pid,omitempty"`
	ExitStatus int        `json:"exitStatus,omitempty"`
	// Synced says, in the answer to waiting for a container's init (OpWait), that the guest
	// wrote its file systems out after the init exited: every process of the container was gone
	// by then (they die with its pid namespace), so nothing of the container's is left unwritten.
	Synced bool   `json:"synced,omitempty"`
	Pids   []int  `json:"pids,omitempty"`
	Stats  *Stats `json:"stats,omitempty"`
	// Notes are what an update could not apply in the guest (OpUpdateContainer).
	Notes []string `json:"notes,omitempty"`
}

// Container and exec IDs become map keys and log fields in the guest; keep
// them to the characters Docker and containerd use.
//
// Names are checked by a pattern without a bound and a separate length: a
// bounded repetition ({0,127}) compiles into a program as many times larger,
// built when the agent binary starts, and every container process and exec
// starts it again (containerinit), in an emulated guest at that.
var (
	idPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	tagPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// IsID reports whether id is a container or exec ID: 1-128 characters from
// [A-Za-z0-9_.-], not starting with a punctuation mark.
func IsID(id string) bool { return len(id) <= 128 && idPattern.MatchString(id) }

// isTag reports whether tag names a share or device: 1-36 characters from [A-Za-z0-9_.-].
func isTag(tag string) bool { return len(tag) <= 36 && tagPattern.MatchString(tag) }

// ValidID accepts a container or exec ID.
func ValidID(kind, id string) error {
	if !IsID(id) {
		return fmt.Errorf("%s ID %q is invalid: use 1-128 characters from [A-Za-z0-9_.-], not starting with a punctuation mark", kind, id)
	}
	return nil
}
