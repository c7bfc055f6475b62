package install

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/daemonjson"
	"github.com/kata-deploy/kata-deploy/installer/engine"
	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// StatusSchemaVersion is the version of Status's JSON form; fields are only added while it is 1.
const StatusSchemaVersion = 1

// Status is the state of an install, as `kata-deploy status` reports it.
type Status struct {
	SchemaVersion int    `json:"schemaVersion"`
	Prefix        string `json:"prefix"`
	Installed     bool   `json:"installed"`
	// Healthy: installed, every file as installed, registered, and loaded by Docker.
	Healthy     bool   `json:"healthy"`
	State       string `json:"state,omitempty"` // installing, installed, uninstalling
	Version     string `json:"version,omitempty"`
	RuntimeName string `json:"runtimeName,omitempty"`
	Default     bool   `json:"default,omitempty"`
	GuestKernel string `json:"guestKernel,omitempty"`
	// Artifacts are the installed files with their recorded checksums and what is on disk.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Registered: daemon.json holds the entry install wrote.
	Registered bool   `json:"registered"`
	DaemonJSON string `json:"daemonJSON,omitempty"`
	Docker     struct {
		Reachable bool   `json:"reachable"`
		Error     string `json:"error,omitempty"`
		// SeesRuntime: GET /info lists the runtime.
		SeesRuntime    bool   `json:"seesRuntime"`
		DefaultRuntime string `json:"defaultRuntime,omitempty"`
	} `json:"docker"`
	Containers []engine.Container `json:"containers"`
	// Accelerator is what the runtime configuration says; HostAccelerator what works here.
	Accelerator       string   `json:"accelerator,omitempty"`
	HostAccelerator   string   `json:"hostAccelerator"`
	AcceleratorReason string   `json:"acceleratorReason"`
	Problems          []string `json:"problems,omitempty"`
}

// Artifact is one installed file.
type Artifact struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// State is "ok", "modified" or "missing".
	State string `json:"state"`
}

// GetStatus reports on the install under o.Prefix without changing anything.
func GetStatus(ctx context.Context, o Options, d Deps) (*Status, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Status{SchemaVersion: StatusSchemaVersion, Prefix: o.Prefix, Containers: []engine.Container{}}
	s.HostAccelerator, s.AcceleratorReason = hostAccelerator()
	m, err := loadManifest(o.Prefix)
	if err != nil || m == nil {
		return s, err
	}
	s.Installed, s.State, s.Version, s.RuntimeName, s.Default = true, m.State, m.Version, m.RuntimeName, m.Default
	if m.Image != nil {
		s.GuestKernel = m.Image.KernelVersion
	}
	if m.State != manifest.StateInstalled {
		s.problem(fmt.Sprintf("the install is %s: a run was interrupted; run `kata-deploy install` (or uninstall) again to finish it", m.State))
	}
	s.checkFiles(m)
	s.checkRegistration(m)
	s.checkDocker(ctx, m, d)
	s.readConfig(Layout{Prefix: m.Prefix})
	s.Healthy = len(s.Problems) == 0
	return s, nil
}

func (s *Status) problem(p string) { s.Problems = append(s.Problems, p) }

func (s *Status) checkFiles(m *manifest.Manifest) {
	for _, f := range m.Files {
		a := Artifact{Path: f.Path, SHA256: f.SHA256, State: "ok"}
		cur, _, err := fileSum(f.Path)
		switch {
		case err != nil || cur == "":
			a.State = "missing"
			s.problem(f.Path + " is missing: run `kata-deploy install` to put it back")
		case cur != f.SHA256:
			a.State = "modified"
			s.problem(f.Path + " was changed since install")
		}
		s.Artifacts = append(s.Artifacts, a)
	}
}

// checkRegistration looks for the entry install wrote, unchanged, in daemon.json.
func (s *Status) checkRegistration(m *manifest.Manifest) {
	st := m.DaemonJSON
	if st == nil {
		s.problem("the runtime is not registered in any daemon.json (read-only configuration: add the stanza `kata-deploy install` printed)")
		return
	}
	s.DaemonJSON = st.Path
	l := Layout{Prefix: m.Prefix}
	want, err := json.Marshal(registration.Entry(l.Shim(), l.Config()))
	if err != nil {
		s.problem(err.Error())
		return
	}
	data, _, err := daemonjson.ReadFile(st.Path)
	if err != nil {
		s.problem(err.Error())
		return
	}
	doc, err := daemonjson.Parse(data)
	if err != nil {
		s.problem(fmt.Sprintf("%s: %v", st.Path, err))
		return
	}
	cur, ok := doc.Runtime(m.RuntimeName)
	s.Registered = ok && sameJSON(cur, want)
	switch {
	case !ok:
		s.problem(fmt.Sprintf("%s has no runtime %q: run `kata-deploy install` again", st.Path, m.RuntimeName))
	case !s.Registered:
		s.problem(fmt.Sprintf("runtime %q in %s is not the entry kata-deploy wrote", m.RuntimeName, st.Path))
	}
}

func sameJSON(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && fmt.Sprint(va) == fmt.Sprint(vb)
}

func (s *Status) checkDocker(ctx context.Context, m *manifest.Manifest, d Deps) {
	docker, _, err := d.Docker(ctx)
	if err != nil {
		s.Docker.Error = err.Error()
		s.problem("Docker is not reachable: " + err.Error())
		return
	}
	defer docker.Close()
	s.Docker.Reachable = true
	names, def, err := docker.Runtimes(ctx)
	if err != nil {
		s.Docker.Error = err.Error()
		s.problem("asking Docker for its runtimes: " + err.Error())
		return
	}
	s.Docker.SeesRuntime, s.Docker.DefaultRuntime = slices.Contains(names, m.RuntimeName), def
	if !s.Docker.SeesRuntime {
		s.problem(fmt.Sprintf("Docker does not list runtime %q: run `kata-deploy install` again (it reloads Docker)", m.RuntimeName))
	}
	if cs, err := docker.ContainersUsing(ctx, m.RuntimeName); err == nil {
		s.Containers = append(s.Containers, cs...)
	}
}

// readConfig reads the accelerator from the runtime configuration and checks the file the way
// the shim will.
func (s *Status) readConfig(l Layout) {
	data, err := os.ReadFile(l.Config())
	if err != nil {
		return // a missing file is reported with the artifacts
	}
	if c, err := config.Decode(data); err == nil {
		s.Accelerator = c.Hypervisor.Accelerator
	}
	if _, err := config.Parse(data); err != nil {
		s.problem(fmt.Sprintf("%s does not pass the runtime's checks: %v", l.Config(), err))
	}
}

// hostAccelerator says which accelerator works on this host now.
func hostAccelerator() (string, string) {
	var cpu hostinfo.CPU
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		cpu, _ = hostinfo.ParseCPUInfo(f)
		f.Close()
	}
	return hostinfo.Accelerator(hostinfo.ProbeKVM("/dev/kvm", "/proc/modules", cpu))
}
