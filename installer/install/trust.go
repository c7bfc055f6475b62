package install

import (
	"fmt"

	"github.com/kata-deploy/kata-deploy/internal/pathtrust"
)

// checkTrusted refuses a prefix (and, for --from, a release directory) that anyone but root (or
// the user running kata-deploy) could change: Docker or containerd run the shim from there as
// root. The rule is pathtrust's: every directory from / down, every symbolic link on the way and
// the directory itself owned by root and not writable by group or others, except that a parent
// with the sticky bit (/tmp) may be. Install, upgrade and rollback check before they change
// anything; install checks the prefix again once it has created it.
func (o options) checkTrusted() error {
	if err := checkTrustedDir("--prefix", o.Prefix); err != nil {
		return err
	}
	if o.From != "" {
		return checkTrustedDir("--kata-dir", o.KataDir)
	}
	return nil
}

func checkTrustedDir(flag, dir string) error {
	if err := pathtrust.Check(dir, pathtrust.Owners()); err != nil {
		return fmt.Errorf("%s %s: refusing to install a runtime that root runs there: %w", flag, dir, err)
	}
	return nil
}
