// Command kata-agent is the guest agent, the /init of a kata-deploy VM. It
// is built static (CGO_ENABLED=0) and also runs, re-executed by itself, as
// the setup step of every container process.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/kata-deploy/kata-deploy/runtime/agent"
	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
)

// version is set at build time with -ldflags "-X main.version=...".
var version string

func main() {
	if len(os.Args) > 1 && os.Args[1] == containerinit.Arg {
		containerinit.Main()
	}
	v := version
	if v == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
		}
	}
	if len(os.Args) > 1 && os.Args[1] == agent.VersionArg {
		// Also the process of the agent's throwaway container (agent.OpWarm).
		fmt.Println("kata-agent", v)
		return
	}
	agent.Main(v)
}
