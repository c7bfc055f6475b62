// Package hostinfo detects what a host offers for running containers in VMs: the distribution and
// its package manager, device nodes, the kernel and cgroup version, QEMU and its helpers, and
// earlier Kata installs. The CPU's virtualization flags and whether KVM is really usable are
// package accel's, which the runtime asks too.
//
// Every reader takes a root directory, a path or an io.Reader so that tests can point it at
// fixtures; production passes "/" and the real /proc and /dev paths. Nothing here changes the host.
package hostinfo
