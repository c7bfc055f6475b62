package hypervisor

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread that is in the given network namespace,
// or in a new one when path is "". A process fn forks inherits that
// thread's namespace; the daemonized QEMU then keeps a new namespace alive.
//
// The thread is switched back afterwards; if that fails it stays locked,
// so the Go runtime destroys it instead of reusing a thread in the wrong
// namespace.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := runInNetNS(path, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// runInNetNS must run on a locked thread. restored reports whether the
// thread is back in its original namespace.
func runInNetNS(path string, fn func() error) (restored bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("open the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := enterNetNS(path); err != nil {
		return true, err
	}
	runErr := fn()
	if err := netns.Set(orig); err != nil {
		return false, errors.Join(runErr, fmt.Errorf("return to the original network namespace: %w", err))
	}
	return true, runErr
}

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
