package install

import (
	"context"
	"fmt"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// Upgrade installs the artifacts given (a newer shim, agent or kernel) as a new version beside
// the one in use, switches <prefix>/current to it atomically, smoke-tests it, and keeps the
// version it replaced for Rollback; a version that fails its smoke test is switched away from
// again. It is Install, except that something must be installed already. An install in the flat
// layout of an earlier kata-deploy is moved into versions (its daemon.json entry re-pointed
// through current, Docker reloaded once).
func Upgrade(ctx context.Context, o UpgradeOptions, d Deps) (*Result, error) {
	return install(ctx, o.options(), d)
}

// RollbackResult is what Rollback did (or would do).
type RollbackResult struct {
	SchemaVersion int    `json:"schemaVersion"`
	DryRun        bool   `json:"dryRun"`
	Prefix        string `json:"prefix"`
	RuntimeName   string `json:"runtimeName"`
	// From is the version that was current; To the one current points at now (the previous one).
	From        string   `json:"from"`
	To          string   `json:"to"`
	GuestKernel string   `json:"guestKernel,omitempty"`
	Smoke       *Smoke   `json:"smoke,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

// Rollback switches <prefix>/current back to the previous version, atomically. The runtime is
// registered through current, so neither daemon.json nor Docker changes, and running containers
// keep the shim they started with. The version rolled back from becomes the previous one: a
// second rollback undoes the first.
func Rollback(ctx context.Context, o RollbackOptions, d Deps) (*RollbackResult, error) {
	return rollback(ctx, o.options(), d)
}

func rollback(ctx context.Context, o options, d Deps) (*RollbackResult, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &RollbackResult{SchemaVersion: ResultSchemaVersion, DryRun: o.DryRun, Prefix: o.Prefix}
	x := &installer{o: o, d: d, res: &Result{}, warns: &res.Warnings}
	if err := o.checkTrusted(); err != nil {
		return res, err
	}
	m, release, err := begin(o)
	defer release()
	if err != nil {
		return res, err
	}
	if err := checkRollback(m, o.Prefix); err != nil {
		return res, err
	}
	if err := checkTrustedDir("--prefix", layout.Layout{Prefix: m.Prefix, Version: m.Previous}.Root()); err != nil {
		return res, err // the version switched to, as a whole
	}
	x.m = m
	res.RuntimeName, res.From, res.To = m.RuntimeName, m.Current, m.Previous
	if v := m.FindVersion(m.Previous); v.Image != nil {
		res.GuestKernel = v.Image.KernelVersion
	}
	if o.DryRun {
		return res, nil
	}
	o.progress(fmt.Sprintf("switching %s back to %s", layout.Layout{Prefix: m.Prefix}.CurrentLink(), versionTarget(m.Previous)))
	if err := x.switchCurrent(m.Previous, m.Current, StepSwitched); err != nil {
		return res, err
	}
	return res, x.checkRolledBack(ctx, res)
}

// checkRollback refuses a rollback that cannot work, saying why.
func checkRollback(m *manifest.Manifest, prefix string) error {
	switch {
	case m == nil:
		return fmt.Errorf("nothing to roll back: kata-deploy is not installed under %s", prefix)
	case m.Source == manifest.SourceUpstream:
		return fmt.Errorf("the install under %s is an upstream Kata release, which has no versions: uninstall it, then install the release you want with --from", prefix)
	case !m.Versioned():
		return fmt.Errorf("the install under %s predates versions (an earlier kata-deploy's flat layout), so there is nothing to roll back to; `kata-deploy upgrade` moves it into versions", prefix)
	case m.State != manifest.StateInstalled:
		return fmt.Errorf("the install under %s is %s (a run was interrupted): finish it with `kata-deploy install` (or uninstall) first", prefix, m.State)
	case m.Previous == "" || m.FindVersion(m.Previous) == nil:
		return fmt.Errorf("no previous version to roll back to under %s: one is kept after an upgrade", prefix)
	case !m.FindVersion(m.Previous).Ready:
		return fmt.Errorf("the previous version %s was never completely installed: it cannot be rolled back to", m.Previous)
	}
	if err := versionFilesIntact(m, m.Previous); err != nil {
		return fmt.Errorf("the previous version %s is damaged (%w): it cannot be rolled back to; `kata-deploy upgrade` installs a fresh one", m.Previous, err)
	}
	return nil
}

// checkRolledBack checks the runtime with the version rolled back to, as its engine can.
func (x *installer) checkRolledBack(ctx context.Context, res *RollbackResult) error {
	x.o.RuntimeName = x.m.RuntimeName
	return registeredWith(x.m).rolledBack(ctx, x, res)
}

// smokeRolledBack makes sure Docker still lists the runtime (nothing needed reloading) and runs
// the smoke container with the version rolled back to.
func (x *installer) smokeRolledBack(ctx context.Context, res *RollbackResult) error {
	docker, _, err := x.d.Docker(ctx)
	if err != nil {
		x.warn(fmt.Sprintf("Docker is not reachable (%v): the rollback is done, but not smoke-tested", err))
		return nil
	}
	defer docker.Close()
	x.docker = docker
	x.res.GuestKernel = res.GuestKernel
	if loaded, err := x.runtimeLoaded(ctx); err != nil || !loaded {
		x.warn(fmt.Sprintf("Docker does not list runtime %q: run `kata-deploy install` to register it again", x.m.RuntimeName))
		return nil
	}
	err = x.smoke(ctx)
	res.Smoke = x.res.Smoke
	x.after(StepSmoke)
	return err
}
