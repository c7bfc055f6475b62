// Package check decides whether a host can run VM containers and says why not.
//
// It works in two steps so that the decisions can be tested without the host: Gather collects Facts
// from the machine (files, ioctls, the Docker Engine API), Evaluate turns Facts into a Report of
// sections and lines, each with a status, the value found and, for warn/fail, the remedy.
//
// The JSON form of Report is a stable interface for scripts (`kata-deploy check --output json`):
// fields are only ever added, never renamed or removed, while SchemaVersion stays 1.
package check

import "github.com/kata-deploy/kata-deploy/internal/qemusandbox"

// SchemaVersion is the version of the JSON report schema.
const SchemaVersion = 1

// Status of one check line.
type Status string

// Statuses, from best to worst.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Line is one finding.
type Line struct {
	// ID is a stable machine-readable name, "section.item", e.g. "virtualization.accelerator".
	ID string `json:"id"`
	// Name is the human label.
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Value is what was found, as a short human-readable string.
	Value string `json:"value"`
	// Remedy says what to do about a warn or fail; empty for ok.
	Remedy string `json:"remedy,omitempty"`
}

// Section groups lines under a heading (Host, Virtualization, ...).
type Section struct {
	Name  string `json:"name"`
	Lines []Line `json:"lines"`
}

// Report is the outcome of `kata-deploy check`.
type Report struct {
	SchemaVersion int `json:"schemaVersion"`
	// CanRunVMContainers is false when at least one line failed.
	CanRunVMContainers bool `json:"canRunVMContainers"`
	// Accelerator is the one the runtime will use: "kvm" or "tcg".
	Accelerator       string `json:"accelerator"`
	AcceleratorReason string `json:"acceleratorReason"`
	Docker            Docker `json:"docker"`
	// QEMUSandbox is the seccomp sandbox QEMU runs under (absent without QEMU).
	QEMUSandbox *qemusandbox.Support `json:"qemuSandbox,omitempty"`
	// VirtiofsdSandbox is how virtiofsd sandboxes itself (absent without virtiofsd).
	VirtiofsdSandbox *qemusandbox.Virtiofsd `json:"virtiofsdSandbox,omitempty"`
	Sections         []Section              `json:"sections"`
}

// Docker is the structured view of the Docker daemon, for scripts.
type Docker struct {
	Reachable bool   `json:"reachable"`
	Host      string `json:"host"`
	Error     string `json:"error,omitempty"`
	// Version and APIVersion are the server's, as `docker version` prints them.
	Version       string `json:"version,omitempty"`
	APIVersion    string `json:"apiVersion,omitempty"`
	MinAPIVersion string `json:"minAPIVersion,omitempty"`
	// ShimV2Runtimes says whether daemon.json runtimes with runtimeType/options are supported (Docker >= 24).
	ShimV2Runtimes bool `json:"shimV2Runtimes"`
	// PID of the dockerd serving Host, found through the socket's peer credentials (0 if unknown).
	PID              int      `json:"pid,omitempty"`
	ConfigFile       string   `json:"configFile,omitempty"`
	ConfigFileSource string   `json:"configFileSource,omitempty"`
	ConfigReadOnly   bool     `json:"configReadOnly,omitempty"`
	Runtimes         []string `json:"runtimes,omitempty"`
	DefaultRuntime   string   `json:"defaultRuntime,omitempty"`
	CgroupDriver     string   `json:"cgroupDriver,omitempty"`
	CgroupVersion    string   `json:"cgroupVersion,omitempty"`
	// BlockVolumes is how many volumes Docker has of the kata-block driver (-1: not asked).
	BlockVolumes int `json:"blockVolumes"`
	// NetNetworks is how many networks Docker has of the kata-net driver (-1: not asked).
	NetNetworks int `json:"netNetworks"`
}

// Plugin is what the host shows of one of kata-deploy's plugin drivers (install --with-plugins).
type Plugin struct {
	Name   string `json:"name"`
	Socket string `json:"socket"`
	// Present: the socket file exists; Reachable: something accepts connections on it.
	Present   bool `json:"present"`
	Reachable bool `json:"reachable"`
}

// Worst returns the worst status among the report's lines.
func (r *Report) Worst() Status {
	worst := OK
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			if l.Status == Fail {
				return Fail
			}
			if l.Status == Warn {
				worst = Warn
			}
		}
	}
	return worst
}

// Line returns the line with the given ID, for tests and callers that need one fact.
func (r *Report) Line(id string) (Line, bool) {
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			if l.ID == id {
				return l, true
			}
		}
	}
	return Line{}, false
}
