package install

import (
	"context"
	"errors"
	"fmt"

	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/installer/registration"
)

// engine is the runtime's registration with what runs containers: Docker's daemon.json
// (dockerReg; stanzaReg when it is read-only) or a containerd drop-in (ctrdPlan). A registration as a Docker managed plugin
// would be a third implementation. An engine value is planned first (nothing written), then
// applied after the artifacts are in place; revert undoes what the manifest records.
type engine interface {
	// changes reports whether applying the registration writes anything.
	changes() bool
	// actions render the registration for the user (and --dry-run); p tells whether anything
	// at all changes.
	actions(p *plan, o options) []Action
	// report describes the registration in the result.
	report(res *Result)
	// files are the files the registration writes, checked for changes by the user.
	files() []fileAction
	// apply registers the runtime once the artifacts are in place.
	apply(ctx context.Context, x *installer, p *plan) error
	// verify checks, once installed, that the engine runs the runtime (a smoke container),
	// switching back to the previous version when it does not.
	verify(ctx context.Context, x *installer, p *plan) error
	// ensure is the whole of a rerun with nothing to change: the engine must still have the
	// runtime loaded.
	ensure(ctx context.Context, x *installer, p *plan) error

	// The methods below serve an existing install (registeredWith), whose registration the
	// manifest records.

	// inUse finds what still runs with the install before an uninstall, which it refuses
	// (ErrInUse) unless told to ignore it; done releases what it connected to.
	inUse(ctx context.Context, x *installer, res *UninstallResult) (done func(), err error)
	// revert undoes the registration the manifest records (uninstall).
	revert(ctx context.Context, x *installer) error
	// rolledBack checks the runtime after a rollback (a smoke container, where there is one).
	rolledBack(ctx context.Context, x *installer, res *RollbackResult) error
	// status reports the registration and what the engine sees of it; shim and config are
	// what the runtime should be registered with.
	status(ctx context.Context, s *Status, m *manifest.Manifest, d Deps, o options, shim, config string)
}

// registeredWith is the engine of an existing install, for reverting it.
func registeredWith(m *manifest.Manifest) engine {
	if m.Engine == manifest.EngineContainerd {
		return &ctrdPlan{}
	}
	return &dockerReg{}
}

// planEngine plans the registration with the engine the options name.
func (x *installer) planEngine(ctx context.Context, p *plan, m *manifest.Manifest, loc dockerd.ConfigLocation) (engine, error) {
	if x.o.Engine == EngineContainerd {
		return x.planContainerd(ctx, p, m)
	}
	return x.planDaemonJSON(p, m, loc)
}

// dockerReg is the registration in Docker's daemon.json.
type dockerReg struct {
	daemonJSON string // the file edited
	edit       *registration.Edit
}

func (r *dockerReg) changes() bool { return r.edit != nil && len(r.edit.Changes) > 0 }

func (r *dockerReg) files() []fileAction { return nil }

func (r *dockerReg) report(res *Result) {
	res.DaemonJSON = r.daemonJSON
	if r.edit != nil {
		res.DaemonJSONDiff = r.edit.Diff()
	}
}

func (r *dockerReg) actions(p *plan, o options) []Action {
	var as []Action
	if len(r.edit.Changes) > 0 {
		as = append(as, Action{Op: "edit-daemon-json", Target: r.daemonJSON, Detail: fmt.Sprintf("register runtime %q", o.RuntimeName)},
			Action{Op: "reload-docker", Target: "dockerd", Detail: "SIGHUP, wait for its reload event, check that it lists " + o.RuntimeName})
	}
	if p.changes() && !o.SkipSmoke {
		as = append(as, Action{Op: "smoke-test", Target: "docker run --rm --runtime=" + o.RuntimeName + " IMAGE uname -r"})
	}
	return as
}

// apply edits daemon.json, reloads Docker and checks it, rolling back on failure.
func (r *dockerReg) apply(ctx context.Context, x *installer, p *plan) error {
	return x.register(ctx, r, p)
}

// verify runs the smoke container.
func (r *dockerReg) verify(ctx context.Context, x *installer, p *plan) error {
	err := x.smoke(ctx)
	x.after(StepSmoke)
	if err != nil {
		return x.switchBack(p, err)
	}
	return nil
}

func (r *dockerReg) ensure(ctx context.Context, x *installer, p *plan) error {
	loaded, err := x.runtimeLoaded(ctx)
	if err != nil {
		return err
	}
	if loaded {
		return nil
	}
	x.res.Changed = true
	return x.register(ctx, r, p)
}

func (r *dockerReg) revert(ctx context.Context, x *installer) error {
	return x.unregisterDaemonJSON(ctx)
}

// inUse asks Docker which containers run with the runtime; without Docker, the uninstall goes
// on (daemon.json is reverted without a reload). A daemon that is not trusted (a process called
// dockerd that another user runs) stops it: DOCKER_HOST names the wrong daemon.
func (r *dockerReg) inUse(ctx context.Context, x *installer, res *UninstallResult) (func(), error) {
	docker, _, err := x.d.Docker(ctx)
	if errors.Is(err, dockerd.ErrUntrusted) {
		return func() {}, err
	}
	if err != nil {
		x.warn(fmt.Sprintf("Docker is not reachable (%v): daemon.json is reverted without a reload, and running containers cannot be checked", err))
		return func() {}, nil
	}
	x.docker = docker
	done := func() { _ = docker.Close() }
	if res.Containers, err = docker.ContainersUsing(ctx, x.m.RuntimeName); err != nil {
		return done, err
	}
	if len(res.Containers) > 0 && !x.o.IgnoreInUse {
		return done, fmt.Errorf("%w: %s; stop them first, or pass --ignore-in-use or --force (they keep running, but without their runtime's files)", ErrInUse, describeContainers(res.Containers))
	}
	return done, nil
}

func (r *dockerReg) rolledBack(ctx context.Context, x *installer, res *RollbackResult) error {
	return x.smokeRolledBack(ctx, res)
}

func (r *dockerReg) status(ctx context.Context, s *Status, m *manifest.Manifest, d Deps, _ options, shim, config string) {
	s.checkRegistration(m, shim, config)
	s.checkDocker(ctx, m, d)
}

// stanzaReg is the registration with a Docker whose daemon.json kata-deploy cannot write (NixOS,
// Docker Desktop): the user adds the stanza. An install registered so is a Docker install for
// uninstall, rollback and status, which the embedded dockerReg serves.
type stanzaReg struct {
	dockerReg
	why    string // why daemon.json is not written
	stanza string // what to add by hand
}

func (r *stanzaReg) changes() bool { return false }

func (r *stanzaReg) report(res *Result) { res.Stanza = r.stanza }

func (r *stanzaReg) actions(*plan, options) []Action {
	return []Action{{Op: "print-stanza", Target: "daemon.json", Detail: r.why}}
}

func (r *stanzaReg) apply(_ context.Context, x *installer, _ *plan) error {
	x.warn(fmt.Sprintf("daemon.json is not written (%s): add the stanza below to the daemon's configuration, then reload Docker", r.why))
	return nil
}

// verify has no smoke container to run until the user has registered the runtime.
func (r *stanzaReg) verify(context.Context, *installer, *plan) error { return nil }

func (r *stanzaReg) ensure(context.Context, *installer, *plan) error { return nil }
