package hypervisor

import (
	"fmt"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// enterNetNS moves the calling thread, which must be locked and is thrown
// away afterwards (confine.go), into the network namespace at path, or into
// a new one when path is "". A process the thread forks inherits it; QEMU
// then keeps a new namespace alive.
func enterNetNS(path string) error {
	if path == "" {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("create a network namespace for QEMU: %w (the runtime needs root / CAP_SYS_ADMIN)", err)
		}
		return nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w: does the container's namespace still exist?", path, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	return nil
}
