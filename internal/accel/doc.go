// Package accel decides which QEMU accelerator a host can use: KVM when /dev/kvm really runs a
// hardware-backed VM, emulation (TCG) otherwise, with one sentence saying why.
//
// Both the installer (to report and plan) and the runtime (to start a VM) need the same verdict, so
// the decision lives in this leaf package, which imports neither of them.
package accel
