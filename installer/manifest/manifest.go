// Package manifest is kata-deploy's install record: every file and directory an install created,
// with checksums, what was there before, the daemon.json changes, and a journal of steps.
//
// The record is written before each resource is created and after, atomically, so that a process
// killed at any point leaves a manifest that names everything on disk that kata-deploy made:
// rerunning install completes the job, and uninstall removes exactly that and nothing else.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/google/renameio/v2"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

// FileName is the manifest's name inside the install prefix.
const FileName = "manifest.json"

// SchemaVersion is the version of the manifest format this kata-deploy writes. Version 1 is the
// flat layout (bin/ and share/ directly under the prefix); version 2 added the versioned layout,
// symlinks, upstream Kata installs and containerd registrations. Fields are only ever added while
// the version stays the same; Load reads both.
const SchemaVersion = 2

// MinSchemaVersion is the oldest manifest format Load reads.
const MinSchemaVersion = 1

// Layouts of an install.
const (
	// LayoutFlat is the layout of schema 1: the files directly under the prefix.
	LayoutFlat = ""
	// LayoutVersioned keeps each set of artifacts in <prefix>/versions/<id>/ and points
	// <prefix>/current at the one in use.
	LayoutVersioned = "versioned"
)

// Sources of the installed runtime.
const (
	SourceBuiltin  = ""         // kata-deploy's own shim, agent and guest image
	SourceUpstream = "upstream" // a Kata Containers static release tarball, extracted as is
)

// Engines a runtime is registered with.
const (
	EngineDocker     = ""           // daemon.json
	EngineContainerd = "containerd" // a drop-in under containerd's imports
)

// maxJournal bounds the journal: the newest entries are what a user debugging a failure needs.
const maxJournal = 200

// ErrNotInstalled is returned by Load when the prefix holds no manifest.
var ErrNotInstalled = errors.New("kata-deploy is not installed there (no manifest)")

// States of an install.
const (
	StateInstalling   = "installing"
	StateInstalled    = "installed"
	StateUninstalling = "uninstalling"
)

// Manifest is the install record, stored as <prefix>/manifest.json (in the format of record).
type Manifest struct {
	SchemaVersion int
	// Version is the kata-deploy version that last wrote the record (hostinfo reads it).
	Version     string
	Prefix      string
	RuntimeName string
	Default     bool
	State       string
	Created     time.Time
	Updated     time.Time
	// Dirs are the directories install created, parents first.
	Dirs []string
	// Files are the files install wrote.
	Files []File
	// Scratch are work directories (a guest image being built) removed whole by uninstall.
	Scratch []string
	// Image is what the guest image was built from.
	Image *Image
	// DaemonJSON is the registration in Docker's daemon.json.
	DaemonJSON *registration.State

	// Layout is LayoutFlat (schema 1) or LayoutVersioned.
	Layout string
	// Current is the id of the version <prefix>/current points at; Previous the one rollback
	// returns to ("" when there is none).
	Current  string
	Previous string
	Versions []Version
	// Switch is a change of <prefix>/current journaled before the rename that makes it.
	Switch *Switch
	// Links are the symlinks install created.
	Links []Link

	// Source is SourceBuiltin or SourceUpstream; Upstream describes the latter.
	Source   string
	Upstream *Upstream

	// Engine is EngineDocker or EngineContainerd; Containerd is the registration of the latter.
	Engine     string
	Containerd *containerdcfg.State

	// Plugin is the Docker plugin service started by install --with-plugins (nil: none).
	Plugin *Plugin

	// RuntimeDirs are the directories the installed runtime makes outside the prefix (its
	// state_dir and <state_dir>.cache) that did not exist when install first wrote a
	// configuration naming them: uninstall removes them once it has emptied the cache.
	RuntimeDirs []string

	Journal []Entry
}

// Modes of a plugin service.
const (
	PluginSystemd = "systemd" // a unit ordered before docker.service
	PluginProcess = "process" // a process of its own session, where systemd does not run
)

// Plugin records kata-deploy's Docker plugin service (kata-plugins): enough to stop exactly it
// and remove exactly what install made for it. Its binary is in Files, its directory in Dirs.
type Plugin struct {
	Name      string `json:"name"`
	Binary    string `json:"binary"`
	StateDir  string `json:"stateDir"`
	SocketDir string `json:"socketDir"`
	// NetworkName is the network driver it serves ("" in installs made before it had one).
	NetworkName     string `json:"networkName,omitempty"`
	NetworkStateDir string `json:"networkStateDir,omitempty"`
	// Mode is PluginSystemd or PluginProcess.
	Mode string `json:"mode"`
	// Unit is the unit file install wrote (systemd), UnitSHA256 its content.
	Unit       string `json:"unit,omitempty"`
	UnitSHA256 string `json:"unitSHA256,omitempty"`
	// PID and StartTime identify the process started outside systemd; Log holds its output.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	Log       string `json:"log,omitempty"`
	// CreatedDirs are the state directory and those of its parents that install created,
	// parents first; uninstall removes them when they are empty of volumes.
	CreatedDirs []string `json:"createdDirs,omitempty"`
}

// Version is one set of artifacts of the versioned layout, in <prefix>/versions/<ID>/.
type Version struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// KataDeployVersion is the kata-deploy that installed it.
	KataDeployVersion string `json:"kataDeployVersion,omitempty"`
	// Ready: every file of the version is written; only a ready version is switched to.
	Ready bool   `json:"ready"`
	Image *Image `json:"image,omitempty"`
	// Factory is the [factory] section the version's configuration was written with (nil: the
	// runtime's defaults, templating off).
	Factory *Factory `json:"factory,omitempty"`
}

// Factory records how the VMs of a version are made other than by a cold boot, as install
// wrote it into the configuration; an upgrade carries it into the new version.
type Factory struct {
	// Template: install --template turned VM templating on ([factory] template = true).
	Template bool `json:"template,omitempty"`
	// Pool: install --pool N kept N clones of the template waiting ([factory] pool = N).
	Pool int `json:"pool,omitempty"`
}

// Switch is the intent of a change of <prefix>/current: once the link points at To, the
// current version is To and the previous one Previous.
type Switch struct {
	To       string `json:"to"`
	Previous string `json:"previous,omitempty"`
}

// Link is a symlink install created.
type Link struct {
	Path   string `json:"path"`
	Target string `json:"target"`
	// PendingTarget is a target being switched to: set before the rename, cleared after.
	PendingTarget string `json:"pendingTarget,omitempty"`
}

// Upstream records an upstream Kata Containers release extracted by install.
type Upstream struct {
	// Tarball is the file installed from, with its checksum and the release's version.
	Tarball string `json:"tarball"`
	SHA256  string `json:"sha256"`
	Version string `json:"version,omitempty"`
	// Dir is where it was extracted (/opt/kata, where the release's configuration expects it).
	Dir string `json:"dir"`
	// Staging is the directory the release is extracted into before it is renamed to Dir.
	Staging string `json:"staging,omitempty"`
	// Aside is where a Dir that was there before (replaced with --force) was moved; uninstall
	// moves it back.
	Aside string `json:"aside,omitempty"`
	// Placed: the extracted release was renamed to Dir. Until then the files recorded under
	// Dir are in Staging, and Dir (if any) is not kata-deploy's.
	Placed bool `json:"placed,omitempty"`
	// Shim and Config are the files the runtime is registered with.
	Shim   string `json:"shim"`
	Config string `json:"config"`
}

// File is one file install wrote.
type File struct {
	Path   string      `json:"path"`
	SHA256 string      `json:"sha256"`
	Size   int64       `json:"size"`
	Mode   fs.FileMode `json:"mode"`
	// PendingSHA256 is the checksum of content being written: set before the write, cleared
	// after. A file with either checksum is kata-deploy's.
	PendingSHA256 string `json:"pendingSHA256,omitempty"`
	// Previous is a file that was at Path before (replaced with --force), kept aside.
	Previous *Previous `json:"previous,omitempty"`
}

// Previous is a file that install moved aside to put its own in place.
type Previous struct {
	SHA256  string `json:"sha256"`
	SavedAs string `json:"savedAs"`
}

// Image records the inputs of the guest image, so that a rerun with the same inputs skips the
// build, the slow part of an install.
type Image struct {
	// Key identifies the inputs: the kernel package's and the agent's checksums.
	Key           string `json:"key"`
	KernelPackage string `json:"kernelPackage"`
	KernelSHA256  string `json:"kernelSHA256"`
	AgentSHA256   string `json:"agentSHA256"`
	KernelVersion string `json:"kernelVersion"`
}

// Entry is one journal line.
type Entry struct {
	Time   time.Time `json:"time"`
	Step   string    `json:"step"`
	Status string    `json:"status"` // "started", "done" or "failed"
	Error  string    `json:"error,omitempty"`
}

// New starts a record for an install into prefix.
func New(prefix, runtimeName, version string, now time.Time) *Manifest {
	return &Manifest{SchemaVersion: SchemaVersion, Version: version, Prefix: prefix, RuntimeName: runtimeName,
		State: StateInstalling, Created: now.UTC(), Updated: now.UTC(), Layout: LayoutVersioned}
}

// Path is where the manifest of prefix lives.
func Path(prefix string) string { return filepath.Join(prefix, FileName) }

// Load reads the manifest of prefix; ErrNotInstalled when there is none.
func Load(prefix string) (*Manifest, error) {
	data, err := os.ReadFile(Path(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", prefix, ErrNotInstalled)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the install manifest: %w", err)
	}
	m, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s %w", Path(prefix), err)
	}
	return m, nil
}

// decode reads a manifest in any format Load accepts.
func decode(data []byte) (*Manifest, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("is damaged (%v): restore it from a backup, or remove the install by hand", err)
	}
	if r.SchemaVersion < MinSchemaVersion || r.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("has schema version %d, this kata-deploy reads %d to %d: use the kata-deploy that installed it", r.SchemaVersion, MinSchemaVersion, SchemaVersion)
	}
	return fromRecord(r), nil
}

// encode is the manifest as Save writes it.
func encode(m *Manifest) ([]byte, error) {
	data, err := json.MarshalIndent(toRecord(m), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the install manifest: %w", err)
	}
	return append(data, '\n'), nil
}

// Save writes the manifest into its prefix atomically and durably (temporary file, fsync,
// rename, directory fsync): a crash leaves the old record or the new one.
func (m *Manifest) Save(now time.Time) error {
	m.Updated = now.UTC()
	data, err := encode(m)
	if err != nil {
		return err
	}
	p := Path(m.Prefix)
	if err := renameio.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("writing the install manifest %s: %w", p, err)
	}
	return syncDir(m.Prefix)
}

// Remove deletes the manifest file: the last step of an uninstall.
func (m *Manifest) Remove() error {
	err := os.Remove(Path(m.Prefix))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the install manifest: %w", err)
	}
	return syncDir(m.Prefix)
}

// Log appends a journal entry.
func (m *Manifest) Log(now time.Time, step, status string, err error) {
	e := Entry{Time: now.UTC(), Step: step, Status: status}
	if err != nil {
		e.Error = err.Error()
	}
	m.Journal = append(m.Journal, e)
	if n := len(m.Journal); n > maxJournal {
		m.Journal = slices.Clone(m.Journal[n-maxJournal:])
	}
}

// File returns the record of the file at path, or nil.
func (m *Manifest) File(path string) *File {
	for i := range m.Files {
		if m.Files[i].Path == path {
			return &m.Files[i]
		}
	}
	return nil
}

// PutFile adds or replaces the record of f.Path.
func (m *Manifest) PutFile(f File) {
	if cur := m.File(f.Path); cur != nil {
		*cur = f
		return
	}
	m.Files = append(m.Files, f)
}

// AddRuntimeDir records a directory of the runtime's that install found absent (once).
func (m *Manifest) AddRuntimeDir(dir string) {
	if !slices.Contains(m.RuntimeDirs, dir) {
		m.RuntimeDirs = append(m.RuntimeDirs, dir)
	}
}

// AddDir records a directory install created (once).
func (m *Manifest) AddDir(dir string) {
	if !slices.Contains(m.Dirs, dir) {
		m.Dirs = append(m.Dirs, dir)
	}
}

// FindVersion returns the record of version id, or nil.
func (m *Manifest) FindVersion(id string) *Version {
	for i := range m.Versions {
		if m.Versions[i].ID == id {
			return &m.Versions[i]
		}
	}
	return nil
}

// PutVersion adds or replaces the record of v.ID.
func (m *Manifest) PutVersion(v Version) {
	if cur := m.FindVersion(v.ID); cur != nil {
		*cur = v
		return
	}
	m.Versions = append(m.Versions, v)
}

// DropVersion forgets version id.
func (m *Manifest) DropVersion(id string) {
	m.Versions = slices.DeleteFunc(m.Versions, func(v Version) bool { return v.ID == id })
}

// Link returns the record of the symlink at path, or nil.
func (m *Manifest) Link(path string) *Link {
	for i := range m.Links {
		if m.Links[i].Path == path {
			return &m.Links[i]
		}
	}
	return nil
}

// PutLink adds or replaces the record of l.Path.
func (m *Manifest) PutLink(l Link) {
	if cur := m.Link(l.Path); cur != nil {
		*cur = l
		return
	}
	m.Links = append(m.Links, l)
}

// Versioned reports whether the install uses the versioned layout.
func (m *Manifest) Versioned() bool { return m.Layout == LayoutVersioned }

// Owns reports whether the symlink at l.Path, pointing at target, is kata-deploy's.
func (l *Link) Owns(target string) bool {
	return target != "" && (target == l.Target || target == l.PendingTarget)
}

// Owns reports whether the file at path, with checksum sha, is kata-deploy's.
func (f *File) Owns(sha string) bool {
	return sha != "" && (sha == f.SHA256 || sha == f.PendingSHA256)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
