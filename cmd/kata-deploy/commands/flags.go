package commands

import (
	"github.com/spf13/pflag"

	"github.com/kata-deploy/kata-deploy/installer/install"
)

// replaceFlags binds what install and upgrade may replace; --force, the older flag, sets all
// of it.
type replaceFlags struct {
	replace install.Replace
	force   bool
}

func bindReplace(f *pflag.FlagSet, r *replaceFlags) {
	f.BoolVar(&r.replace.Foreign, "replace-foreign", false, "replace files (and with --from an /opt/kata) kata-deploy did not install: they are kept aside and restored by uninstall")
	f.BoolVar(&r.replace.Modified, "replace-modified", false, "replace kata-deploy's files changed since install (kept aside like foreign ones)")
	f.BoolVar(&r.replace.RuntimeEntry, "replace-runtime-entry", false, "replace a different daemon.json entry of the same runtime name")
	f.BoolVar(&r.force, "force", false, "all of --replace-foreign, --replace-modified and --replace-runtime-entry")
}

// value is the Replace the flags ask for.
func (r *replaceFlags) value() install.Replace {
	if r.force {
		return install.ReplaceAll
	}
	return r.replace
}
