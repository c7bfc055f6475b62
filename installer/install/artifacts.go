package install

import (
	"context"
	"fmt"

	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// artifacts are where the runtime's files come from: kata-deploy's own shim, agent and a guest
// image built here from a distribution kernel (builtinPlan), or an upstream Kata Containers
// release (upstreamPlan, --from). Like an engine, they are planned first, then applied step by
// step.
type artifacts interface {
	// changes reports whether installing them writes anything.
	changes() bool
	// actions render what is installed; cleanupActions what is removed once the runtime is
	// registered and in use.
	actions(p *plan, o options) []Action
	cleanupActions(p *plan) []Action
	// report describes them in the result.
	report(res *Result)
	// entryShim and entryConfig are the paths the runtime is registered with.
	entryShim(p *plan) string
	entryConfig(p *plan) string
	// steps install them, in order, each journaled.
	steps(x *installer) []func(context.Context, *plan) error
}

func (b *builtinPlan) changes() bool {
	return writes(b.shim) || writes(b.config) || b.image.Needed || b.switchTo || b.migrate ||
		len(b.pruneVersions) > 0 || len(b.pruneFlat) > 0
}

// The runtime is registered through <prefix>/current, so that versions switch without an
// engine reload.
func (b *builtinPlan) entryShim(p *plan) string   { return p.layout.EntryShim() }
func (b *builtinPlan) entryConfig(p *plan) string { return p.layout.EntryConfig() }

// report adds the [factory] settings; the version and guest kernel are reported as they are
// decided.
func (b *builtinPlan) report(res *Result) {
	res.Template, res.Pool = b.settings.Template, b.settings.Pool
}

func (b *builtinPlan) steps(x *installer) []func(context.Context, *plan) error {
	return []func(context.Context, *plan) error{x.makeDirs, x.startVersion, x.installShim, x.buildImage, x.writeConfig, x.finishVersion, x.switchVersion}
}

func (b *builtinPlan) actions(p *plan, o options) []Action {
	as := fileActions(b.shim, "the shim, from "+b.shim.Src)
	as = append(as, b.imageActions(p, o)...)
	as = append(as, fileActions(b.config, "the runtime configuration")...)
	if b.switchTo {
		detail := "the new version, atomically"
		if b.from != "" && b.from != p.layout.Version {
			detail = fmt.Sprintf("from %s, atomically; %s is kept for rollback", versionTarget(b.from), versionTarget(b.from))
		}
		as = append(as, Action{Op: "switch", Target: p.layout.CurrentLink() + " -> " + versionTarget(p.layout.Version), Detail: detail})
	}
	return as
}

func (b *builtinPlan) imageActions(p *plan, o options) []Action {
	var as []Action
	if b.image.Fetch {
		as = append(as, Action{Op: "fetch-kernel", Target: o.KernelCache, Detail: "the distribution's kernel package, with apt-get download"})
	}
	if src := b.image.reuse; b.image.Needed && src != "" {
		as = append(as, Action{Op: "copy-image", Target: p.layout.ImageDir(), Detail: "from " + src + ", built from the same kernel and agent"})
	} else if b.image.Needed {
		from := "the fetched kernel package"
		if b.image.Kernel != nil {
			from = b.image.Kernel.Path
		}
		as = append(as, Action{Op: "build-image", Target: p.layout.ImageDir(),
			Detail: fmt.Sprintf("vmlinux and initrd.img from %s and the agent %s", from, b.image.Agent.Path)})
	}
	for _, f := range b.image.Files {
		if f.State == fileModified && !b.image.Needed {
			as = append(as, Action{Op: "keep", Target: f.Path, Detail: "changed since install; left as is (--replace-modified or --force rebuilds it)"})
		}
	}
	return as
}

// cleanupActions are the versions and the flat layout pruned once the new version is in use.
func (b *builtinPlan) cleanupActions(p *plan) []Action {
	var as []Action
	for _, id := range b.pruneVersions {
		as = append(as, Action{Op: "remove-version", Target: layout.Layout{Prefix: p.layout.Prefix, Version: id}.Root(), Detail: "neither current nor kept for rollback"})
	}
	if len(b.pruneFlat) > 0 {
		as = append(as, Action{Op: "remove-flat-layout", Target: p.layout.Prefix, Detail: fmt.Sprintf("%d files of the layout before versions, once the new version is in use", len(b.pruneFlat))})
	}
	return as
}
