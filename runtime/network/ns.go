package network

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNamespace runs fn on an OS thread switched into ns. Sockets and tun devices belong to the
// namespace of the thread that creates them, so this is how they end up in the container's
// namespace; netlink requests need no thread switch (their handle's socket is already there).
//
// The thread is switched back afterwards; should that fail it stays locked, and Go destroys it
// instead of reusing a thread in the wrong namespace.
func inNamespace(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := runIn(ns, fn)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// runIn must run on a locked thread; restored reports whether it is back in its namespace.
func runIn(ns netns.NsHandle, fn func() error) (restored bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("opening the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return true, fmt.Errorf("entering the container's network namespace: %w", err)
	}
	runErr := fn()
	if err := netns.Set(orig); err != nil {
		return false, errors.Join(runErr, fmt.Errorf("returning to the shim's network namespace: %w", err))
	}
	return true, runErr
}
