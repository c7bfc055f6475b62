// Package volume is the kata-block Docker volume driver: each volume is a sparse image file with
// its own file system. A container of the VM runtime gets the image as a virtio-blk device (the
// driver writes an upstream Kata direct-volume record for the runtime to find); a runc container
// gets the image loop-mounted on the host, after a read-only file system check, since a file
// system a VM wrote is untrusted input to the host kernel. See docs/plugins.md.
package volume
