// Package qemusandbox finds out which of QEMU's seccomp sandbox options
// (-sandbox) a QEMU binary supports, by running it: the runtime uses the
// answer to build QEMU's command line, `kata-deploy check` reports it. Both
// ask the same question of the same binary, so what check reports is what
// the runtime applies.
package qemusandbox
