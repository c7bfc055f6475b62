package commands

import (
	"github.com/spf13/cobra"
)

// newHoldCommand is what a Kubernetes DaemonSet's pod runs after its init container installed:
// nothing, until the pod is stopped, so that the pod's preStop hook uninstalls when the
// DaemonSet is deleted (configs/kubernetes).
func newHoldCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "hold",
		Short:  "Wait until stopped (SIGTERM); the main container of the Kubernetes DaemonSet",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			<-cmd.Context().Done()
			return nil
		},
	}
}
