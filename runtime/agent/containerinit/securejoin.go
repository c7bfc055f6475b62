package containerinit

import (
	"fmt"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// secureJoin resolves unsafePath as if root were "/": symlinks in it, and
// "..", never lead outside root. Missing components are kept as they are
// (they will be created as directories). A container image controls its
// symlinks, so mount destinations must be resolved this way.
//
// This is security-critical, so it is github.com/cyphar/filepath-securejoin
// (what runc uses) rather than code of our own. The caller then uses the
// path by name: that is safe only because no container process runs before
// the rootfs is set up, so nothing in the guest can swap a component in
// between.
func secureJoin(root, unsafePath string) (string, error) {
	p, err := securejoin.SecureJoin(root, unsafePath)
	if err != nil {
		return "", fmt.Errorf("resolve %s in %s: %w", unsafePath, root, err)
	}
	return p, nil
}
