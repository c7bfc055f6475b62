// Command kata-plugins serves kata-deploy's Docker plugins: the kata-block volume driver (block
// device volumes for VMs, loop-mounted for runc containers) and the kata-net network driver (a
// bridge per network, veth endpoints). Run as root, in dockerd's network namespace.
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
	flag.StringVar(&o.NetworkName, "network-name", plugin.DefaultNetworkName, `name of the network driver (docker network create -d NAME); "" serves none`)
	flag.StringVar(&o.NetworkStateDir, "network-state-dir", plugin.DefaultNetworkStateDir, "directory of the networks' state")
	flag.StringVar(&o.SocketDir, "socket-dir", plugin.DefaultSocketDir, "directory Docker finds plugin sockets in")
	flag.StringVar(&o.HostStateDir, "host-state-dir", "", `where the host sees the state directory, when it is not the same path (a managed plugin); "auto": the root of the mount at the state directory`)
	flag.IntVar(&o.GID, "gid", 0, "group owning the socket (mode 0660)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := plugin.Serve(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "kata-plugins:", err)
		os.Exit(1)
	}
}
