package containerinit

import "sort"

// runcMountOptions are the mount options runc knows (runc features), the candidates for what
// this agent does.
var runcMountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "idmap", "iversion",
	"lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime",
	"nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind",
	"rdev", "rdiratime", "relatime", "remount", "rexec", "ridmap", "rnoatime", "rnodev", "rnodiratime",
	"rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate",
	"rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow",
	"runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync",
	"tmpcopyup", "unbindable",
}

// MountOptions lists the OCI mount options the agent applies (the "mountOptions" of the OCI
// runtime features): those it translates to mount(2) flags, propagation or mount_setattr(2), not
// the ones it recognizes and ignores.
func MountOptions() []string {
	var out []string
	var r recursiveAttrs
	for _, o := range runcMountOptions {
		_, _, flag := mountFlag(o)
		_, prop := propagationFlag(o)
		if flag || prop || recursiveOption(o, &r) {
			out = append(out, o)
		}
	}
	sort.Strings(out)
	return out
}

// Capabilities lists the capabilities the agent can give a container process.
func Capabilities() []string {
	names := capabilityNames()
	return append([]string(nil), names[:]...)
}
