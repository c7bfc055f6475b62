package commands

import (
	"context"
	"fmt"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/kata-deploy/kata-deploy/installer/fleet"
	"github.com/kata-deploy/kata-deploy/installer/install"
)

// newFleetLaunchCommand is the task of the Docker Swarm global service (configs/swarm): install
// on its node through the node's Docker socket, hold, uninstall when stopped.
func newFleetLaunchCommand() *cobra.Command {
	var image, prefix string
	cmd := &cobra.Command{
		Use:   "fleet-launch [-- INSTALL-FLAGS...]",
		Short: "Install on this swarm node through its Docker socket, label it, uninstall when stopped",
		Long: `fleet-launch is what the global service of configs/swarm/kata-deploy-stack.yml runs on every
node, in a container that mounts the node's Docker socket at ` + fleet.SocketPath + ` (a service
cannot be privileged). Through that socket it runs the installer image privileged on the node
(docker run --rm --privileged --pid=host -v /:/host IMAGE install [INSTALL-FLAGS]), labels the
node ` + fleet.NodeLabel + `=` + fleet.LabelInstalled + ` (managers only), and waits. Stopped (docker stack rm), it
runs uninstall the same way and takes the label off.`,
		Example: `  docker stack deploy -c configs/swarm/kata-deploy-stack.yml kata-deploy
  docker stack rm kata-deploy`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := client.NewClientWithOpts(client.WithHost("unix://"+fleet.SocketPath), client.WithAPIVersionNegotiation())
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			defer cli.Close()
			l := &fleet.Launcher{Cli: cli, Image: image, Prefix: prefix, InstallArgs: args, Log: cmd.ErrOrStderr()}
			if err := l.Install(cmd.Context()); err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "kata-deploy: installed on this node; stop this task (docker stack rm) to uninstall")
			<-cmd.Context().Done()
			// The stop's grace period (stop_grace_period in the stack file) bounds this.
			ctx, cancel := context.WithTimeout(context.Background(), fleet.RunTimeout)
			defer cancel()
			if err := l.Uninstall(ctx); err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "kata-deploy: uninstalled from this node")
			return nil
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "installer image to run (default: this container's own image)")
	cmd.Flags().StringVar(&prefix, "prefix", "", "the install's --prefix, passed to install and uninstall (default "+install.DefaultPrefix+")")
	return cmd
}
