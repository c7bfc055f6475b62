// Command kata-plugins serves kata-deploy's Docker plugins: the kata-block volume driver (block
// device volumes for VMs, loop-mounted for runc containers). Run as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/kata-deploy/kata-deploy/plugin"
)

func main() {
	o := plugin.Options{Logf: log.Printf}
	flag.StringVar(&o.VolumeName, "volume-name", plugin.DefaultVolumeName, "name of the volume driver (docker volume create -d NAME)")
	flag.StringVar(&o.StateDir, "state-dir", plugin.DefaultStateDir, "directory of the volumes' images and state")
	flag.StringVar(&o.SocketDir, "socket-dir", plugin.DefaultSocketDir, "directory Docker finds plugin sockets in")
	flag.IntVar(&o.GID, "gid", 0, "group owning the socket (mode 0660)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := plugin.Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "kata-plugins:", err)
		os.Exit(1)
	}
}
