package manifest

import (
	"time"

	"github.com/kata-deploy/kata-deploy/installer/containerdcfg"
	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

// record is the manifest as stored in manifest.json. The JSON names here are the file format:
// they must not change while existing installs carry them (the golden test pins them). The
// state of other packages (registration, containerdcfg) is copied into records of this
// package, so that renaming a field there cannot change the file.
type record struct {
	SchemaVersion int               `json:"schemaVersion"`
	Version       string            `json:"version"`
	Prefix        string            `json:"prefix"`
	RuntimeName   string            `json:"runtimeName"`
	Default       bool              `json:"default,omitempty"`
	State         string            `json:"state"`
	Created       time.Time         `json:"created"`
	Updated       time.Time         `json:"updated"`
	Dirs          []string          `json:"dirs,omitempty"`
	Files         []File            `json:"files,omitempty"`
	Scratch       []string          `json:"scratch,omitempty"`
	Image         *Image            `json:"image,omitempty"`
	DaemonJSON    *daemonJSONRecord `json:"daemonJSON,omitempty"`
	Layout        string            `json:"layout,omitempty"`
	Current       string            `json:"current,omitempty"`
	Previous      string            `json:"previous,omitempty"`
	Versions      []Version         `json:"versions,omitempty"`
	Switch        *Switch           `json:"switch,omitempty"`
	Links         []Link            `json:"links,omitempty"`
	Source        string            `json:"source,omitempty"`
	Upstream      *Upstream         `json:"upstream,omitempty"`
	Engine        string            `json:"engine,omitempty"`
	Containerd    *containerdRecord `json:"containerd,omitempty"`
	Plugin        *Plugin           `json:"plugin,omitempty"`
	RuntimeDirs   []string          `json:"runtimeDirs,omitempty"`
	Journal       []Entry           `json:"journal,omitempty"`
}

// daemonJSONRecord is a registration.State.
type daemonJSONRecord struct {
	Path    string         `json:"path"`
	Created bool           `json:"created,omitempty"`
	Backup  string         `json:"backup,omitempty"`
	Changes []changeRecord `json:"changes,omitempty"`
	Pending *pendingRecord `json:"pending,omitempty"`
}

// pendingRecord is a registration.Pending.
type pendingRecord struct {
	BeforeSHA256 string         `json:"beforeSHA256"`
	AfterSHA256  string         `json:"afterSHA256"`
	Changes      []changeRecord `json:"changes"`
}

// changeRecord is a daemonjson.Change, its values kept as strings so that they survive byte
// for byte (number precision, key order, layout).
type changeRecord struct {
	Key    string  `json:"key"`
	Before *string `json:"before,omitempty"`
	After  *string `json:"after,omitempty"`
}

// containerdRecord is a containerdcfg.State.
type containerdRecord struct {
	Config        string            `json:"config"`
	ConfigVersion int               `json:"configVersion"`
	ConfigCreated bool              `json:"configCreated,omitempty"`
	Import        *importEditRecord `json:"import,omitempty"`
	PendingImport *importEditRecord `json:"pendingImport,omitempty"`
	DropIn        string            `json:"dropIn,omitempty"`
	RestartNeeded bool              `json:"restartNeeded,omitempty"`
}

// importEditRecord is a containerdcfg.ImportEdit.
type importEditRecord struct {
	Offset       int    `json:"offset"`
	Text         string `json:"text"`
	BeforeSHA256 string `json:"beforeSHA256"`
	AfterSHA256  string `json:"afterSHA256"`
}

func toRecord(m *Manifest) record {
	return record{SchemaVersion: m.SchemaVersion, Version: m.Version, Prefix: m.Prefix, RuntimeName: m.RuntimeName,
		Default: m.Default, State: m.State, Created: m.Created, Updated: m.Updated,
		Dirs: m.Dirs, Files: m.Files, Scratch: m.Scratch, Image: m.Image, DaemonJSON: daemonJSONToRecord(m.DaemonJSON),
		Layout: m.Layout, Current: m.Current, Previous: m.Previous, Versions: m.Versions, Switch: m.Switch,
		Links: m.Links, Source: m.Source, Upstream: m.Upstream, Engine: m.Engine,
		Containerd: containerdToRecord(m.Containerd), Plugin: m.Plugin,
		RuntimeDirs: m.RuntimeDirs, Journal: m.Journal}
}

func fromRecord(r record) *Manifest {
	return &Manifest{SchemaVersion: r.SchemaVersion, Version: r.Version, Prefix: r.Prefix, RuntimeName: r.RuntimeName,
		Default: r.Default, State: r.State, Created: r.Created, Updated: r.Updated,
		Dirs: r.Dirs, Files: r.Files, Scratch: r.Scratch, Image: r.Image, DaemonJSON: r.DaemonJSON.state(),
		Layout: r.Layout, Current: r.Current, Previous: r.Previous, Versions: r.Versions, Switch: r.Switch,
		Links: r.Links, Source: r.Source, Upstream: r.Upstream, Engine: r.Engine,
		Containerd: r.Containerd.state(), Plugin: r.Plugin,
		RuntimeDirs: r.RuntimeDirs, Journal: r.Journal}
}

func daemonJSONToRecord(s *registration.State) *daemonJSONRecord {
	if s == nil {
		return nil
	}
	r := &daemonJSONRecord{Path: s.Path, Created: s.Created, Backup: s.Backup, Changes: changesToRecords(s.Changes)}
	if p := s.Pending; p != nil {
		r.Pending = &pendingRecord{BeforeSHA256: p.BeforeSHA256, AfterSHA256: p.AfterSHA256, Changes: changesToRecords(p.Changes)}
	}
	return r
}

func (r *daemonJSONRecord) state() *registration.State {
	if r == nil {
		return nil
	}
	s := &registration.State{Path: r.Path, Created: r.Created, Backup: r.Backup, Changes: recordsToChanges(r.Changes)}
	if p := r.Pending; p != nil {
		s.Pending = &registration.Pending{BeforeSHA256: p.BeforeSHA256, AfterSHA256: p.AfterSHA256, Changes: recordsToChanges(p.Changes)}
	}
	return s
}

// changesToRecords and recordsToChanges keep a nil list nil: "changes" of a pending write is
// written as null then, as it always was.
func changesToRecords(cs []daemonjson.Change) []changeRecord {
	if cs == nil {
		return nil
	}
	rs := make([]changeRecord, len(cs))
	for i, c := range cs {
		rs[i] = changeRecord{Key: c.Key, Before: rawString(c.Before), After: rawString(c.After)}
	}
	return rs
}

func recordsToChanges(rs []changeRecord) []daemonjson.Change {
	if rs == nil {
		return nil
	}
	cs := make([]daemonjson.Change, len(rs))
	for i, r := range rs {
		cs[i] = daemonjson.Change{Key: r.Key, Before: stringRaw(r.Before), After: stringRaw(r.After)}
	}
	return cs
}

func rawString(raw []byte) *string {
	if raw == nil {
		return nil
	}
	s := string(raw)
	return &s
}

func stringRaw(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}

func containerdToRecord(s *containerdcfg.State) *containerdRecord {
	if s == nil {
		return nil
	}
	return &containerdRecord{Config: s.Config, ConfigVersion: s.ConfigVersion, ConfigCreated: s.ConfigCreated,
		Import: importToRecord(s.Import), PendingImport: importToRecord(s.PendingImport), DropIn: s.DropIn,
		RestartNeeded: s.RestartNeeded}
}

func (r *containerdRecord) state() *containerdcfg.State {
	if r == nil {
		return nil
	}
	return &containerdcfg.State{Config: r.Config, ConfigVersion: r.ConfigVersion, ConfigCreated: r.ConfigCreated,
		Import: r.Import.edit(), PendingImport: r.PendingImport.edit(), DropIn: r.DropIn, RestartNeeded: r.RestartNeeded}
}

func importToRecord(e *containerdcfg.ImportEdit) *importEditRecord {
	if e == nil {
		return nil
	}
	return &importEditRecord{Offset: e.Offset, Text: e.Text, BeforeSHA256: e.BeforeSHA256, AfterSHA256: e.AfterSHA256}
}

func (r *importEditRecord) edit() *containerdcfg.ImportEdit {
	if r == nil {
		return nil
	}
	return &containerdcfg.ImportEdit{Offset: r.Offset, Text: r.Text, BeforeSHA256: r.BeforeSHA256, AfterSHA256: r.AfterSHA256}
}
