package agentproto

// What the host and the guest agree on outside the wire protocol: how the host reaches the agent,
// where the guest image puts what the agent reads, and what the host passes on the kernel command
// line. The shim, the QEMU driver, the guest image builder and the agent all use these names; a
// value changed on one side only would give a guest that boots and never answers.
const (
	// AgentPortName is the name of the virtio-serial port the agent serves on; the agent finds it
	// under VirtioPortsDir/*/name.
	AgentPortName = "agent.0"
	// VirtioPortsDir is where the guest kernel lists virtio-serial ports.
	VirtioPortsDir = "/sys/class/virtio-ports"

	// InitPath is the agent's path in the initrd: the kernel runs it as PID 1.
	InitPath = "/init"
	// ModulesListPath names the kernel modules the agent loads at boot, one per line, in load
	// order; each is ModulesDir/<name>.ko.
	ModulesListPath = "/etc/kata-deploy/modules.load"
	// ModuleGroupsDir holds one list per module group (ModuleGroup*), <group>.load, same format:
	// the modules the agent loads only when a container needs them.
	ModuleGroupsDir = "/etc/kata-deploy/modules.d"
	// ModulesDir holds the guest's kernel modules as <name>.ko.
	ModulesDir = "/lib/modules"

	// SharedTag is the mount tag of the one filesystem the host shares with the guest.
	SharedTag = "kataShared"
	// SharedGuestDir is where the agent mounts that filesystem.
	SharedGuestDir = "/run/kata-deploy/shared"

	// BlockGuestDir holds the mount points of the direct-assigned disks, one directory per disk
	// named by its serial; the container's bind mounts start there.
	BlockGuestDir = "/run/kata-deploy/blocks"

	// DebugParam is the kernel parameter that turns on the agent's verbose log ("agent.debug=1").
	DebugParam = "agent.debug"
	// ModulesParam names the module groups the VM will need ("agent.modules=9p,net"): the agent
	// loads them in the background from the start, while the host sets the container up.
	ModulesParam = "agent.modules"
)

// Module groups: kernel modules in the guest image that the agent loads when a container first
// needs them, not at boot.
const (
	ModuleGroup9P       = "9p"       // the shared file system over virtio-9p
	ModuleGroupVirtioFS = "virtiofs" // the shared file system over virtio-fs
	ModuleGroupNet      = "net"      // virtio-net NICs
	ModuleGroupBlock    = "blk"      // virtio-blk disks
	ModuleGroupFS       = "fs"       // the file systems of disks (ext4, xfs)
	ModuleGroupVsock    = "vsock"    // the virtio vsock transport
)

// ShareModuleGroups are the module groups the guest needs to mount a share of this type
// (Share9P, ShareVirtioFS, ShareBlock), in load order.
func ShareModuleGroups(shareType string) []string {
	switch shareType {
	case Share9P:
		return []string{ModuleGroup9P}
	case ShareVirtioFS:
		return []string{ModuleGroupVirtioFS}
	case ShareBlock:
		return []string{ModuleGroupBlock, ModuleGroupFS}
	}
	return nil
}

// IsModuleGroup tells a module group's name from anything else, which must never become a path.
func IsModuleGroup(name string) bool {
	switch name {
	case ModuleGroup9P, ModuleGroupVirtioFS, ModuleGroupNet, ModuleGroupBlock, ModuleGroupFS, ModuleGroupVsock:
		return true
	}
	return false
}
