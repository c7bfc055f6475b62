// Package agent is the guest agent: PID 1 of a kata-deploy VM.
//
// Main mounts the base filesystems, loads the kernel modules named in
// /etc/kata-deploy/modules.load (the channel to the host; the others load
// by group when needed, ModuleGroups), reaps every child (Reaper: the one place
// that waits), and serves the host over the virtio-serial port "agent.0"
// (SerialPort) with the protocol of package agentproto.
//
// Server holds the containers and their stdio plumbing and answers
// requests; it does the operating-system work through an Executor.
// NSExecutor, the real one, starts every container process by re-executing
// the agent binary as package containerinit, which sets the process up in
// its namespaces and waits for Start before it executes the user's program.
//
// Layers, top to bottom: Server (protocol, state, stdio) -> Executor
// (processes, mounts) -> containerinit (inside the namespaces).
package agent
