package containerinit

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountOptions is the translation of an OCI mount's options list.
type mountOptions struct {
	flags       uintptr   // for mount(2)
	propagation []uintptr // applied one by one after mounting
	data        string    // filesystem-specific options, comma separated
	ignored     []string  // recognized runc extensions this agent does not do
	recursive   recursiveAttrs
}

// mountFlag translates one flag option: set or clear bits.
func mountFlag(opt string) (flag uintptr, clear, ok bool) {
	switch opt {
	case "ro":
		return unix.MS_RDONLY, false, true
	case "rw":
		return unix.MS_RDONLY, true, true
	case "nosuid":
		return unix.MS_NOSUID, false, true
	case "suid":
		return unix.MS_NOSUID, true, true
	case "nodev":
		return unix.MS_NODEV, false, true
	case "dev":
		return unix.MS_NODEV, true, true
	case "noexec":
		return unix.MS_NOEXEC, false, true
	case "exec":
		return unix.MS_NOEXEC, true, true
	case "sync":
		return unix.MS_SYNCHRONOUS, false, true
	case "async":
		return unix.MS_SYNCHRONOUS, true, true
	case "dirsync":
		return unix.MS_DIRSYNC, false, true
	case "remount":
		return unix.MS_REMOUNT, false, true
	case "mand":
		return unix.MS_MANDLOCK, false, true
	case "nomand":
		return unix.MS_MANDLOCK, true, true
	case "noatime":
		return unix.MS_NOATIME, false, true
	case "atime":
		return unix.MS_NOATIME, true, true
	case "nodiratime":
		return unix.MS_NODIRATIME, false, true
	case "diratime":
		return unix.MS_NODIRATIME, true, true
	case "relatime":
		return unix.MS_RELATIME, false, true
	case "norelatime":
		return unix.MS_RELATIME, true, true
	case "strictatime":
		return unix.MS_STRICTATIME, false, true
	case "nostrictatime":
		return unix.MS_STRICTATIME, true, true
	case "lazytime":
		return unix.MS_LAZYTIME, false, true
	case "nolazytime":
		return unix.MS_LAZYTIME, true, true
	case "silent":
		return unix.MS_SILENT, false, true
	case "loud":
		return unix.MS_SILENT, true, true
	case "bind":
		return unix.MS_BIND, false, true
	case "rbind":
		return unix.MS_BIND | unix.MS_REC, false, true
	}
	return 0, false, false
}

// propagationFlag translates a propagation option.
func propagationFlag(opt string) (uintptr, bool) {
	switch opt {
	case "private":
		return unix.MS_PRIVATE, true
	case "rprivate":
		return unix.MS_PRIVATE | unix.MS_REC, true
	case "shared":
		return unix.MS_SHARED, true
	case "rshared":
		return unix.MS_SHARED | unix.MS_REC, true
	case "slave":
		return unix.MS_SLAVE, true
	case "rslave":
		return unix.MS_SLAVE | unix.MS_REC, true
	case "unbindable":
		return unix.MS_UNBINDABLE, true
	case "runbindable":
		return unix.MS_UNBINDABLE | unix.MS_REC, true
	}
	return 0, false
}

// ignoredOption reports runc extensions that are not mount(2) options.
func ignoredOption(opt string) bool {
	switch opt {
	case "tmpcopyup", "idmap", "ridmap", "rnoatime", "ratime", "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime",
		"rnodiratime", "rdiratime", "nosymfollow", "symfollow":
		return true
	}
	return false
}

func parseMountOptions(opts []string) mountOptions {
	var m mountOptions
	var data []string
	for _, o := range opts {
		if f, clear, ok := mountFlag(o); ok {
			if clear {
				m.flags &^= f
			} else {
				m.flags |= f
			}
			continue
		}
		if p, ok := propagationFlag(o); ok {
			m.propagation = append(m.propagation, p)
			continue
		}
		if recursiveOption(o, &m.recursive) {
			continue
		}
		if ignoredOption(o) {
			m.ignored = append(m.ignored, o)
			continue
		}
		data = append(data, o)
	}
	m.data = strings.Join(data, ",")
	return m
}

// withDataOption adds key=value (or a bare key) to a data string unless the
// key is already there.
func withDataOption(data, key, value string) string {
	for _, o := range strings.Split(data, ",") {
		k, _, _ := strings.Cut(o, "=")
		if k == key {
			return data
		}
	}
	opt := key
	if value != "" {
		opt += "=" + value
	}
	if data == "" {
		return opt
	}
	return data + "," + opt
}
