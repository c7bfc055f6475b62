// Command kata-deploy makes a Docker host run containers inside lightweight virtual machines.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kata-deploy/kata-deploy/cmd/kata-deploy/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
