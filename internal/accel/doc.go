// Package accel finds out which accelerator VMs can use here: whether KVM really works (the
// device answers its ioctls, the CPU shows vmx/svm, no paravirtual KVM that hangs a stock guest
// kernel), else TCG, and why. The installer's check and the runtime's sandbox both ask it, so it
// belongs to neither; it imports only the standard library and x/sys.
package accel
