package agent

import (
	"strings"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// BootOptions are the agent's settings from the kernel command line.
type BootOptions struct {
	Debug    bool // agent.debug=1
	CgroupV1 bool // agent.cgroup=v1
	// Modules are the module groups to load ahead of need (agent.modules=9p,net); BadModules
	// the names in that list that are no group.
	Modules, BadModules []string
}

// ParseCmdline reads agent.* parameters from /proc/cmdline's content.
func ParseCmdline(cmdline string) BootOptions {
	var o BootOptions
	for _, field := range strings.Fields(cmdline) {
		key, value, hasValue := strings.Cut(field, "=")
		switch key {
		case agentproto.DebugParam:
			o.Debug = !hasValue || value == "1" || value == "true" || value == "on"
		case agentproto.CgroupParam:
			o.CgroupV1 = value == "v1"
		case agentproto.ModulesParam:
			o.Modules, o.BadModules = parseModuleGroups(value)
		}
	}
	return o
}
