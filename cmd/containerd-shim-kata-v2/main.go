// Command containerd-shim-kata-v2 is the containerd shim v2 of kata-deploy's VM runtime: each
// container runs in its own QEMU virtual machine. containerd (and Docker through it) starts it for
// runtime type io.containerd.kata.v2 or by absolute path in daemon.json's "runtimeType".
package main

import (
	"context"
	"os"

	"github.com/containerd/containerd/v2/pkg/shim"

	kshim "github.com/kata-deploy/kata-deploy/runtime/shim"
)

func main() {
	if os.Getenv(kshim.FillPoolEnv) == "1" {
		// Started by a shim to refill the pool of clones ([factory] pool), detached.
		os.Exit(kshim.FillPoolMain(os.Stdin, os.Stderr))
	}
	kshim.Register()
	// No reaper, no subreaper: QEMU is watched and reaped through a pidfd, and a reaper in the
	// shim would race that and any exec.Cmd.Wait.
	shim.RunShim(context.Background(), kshim.Manager{}, func(c *shim.Config) {
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
