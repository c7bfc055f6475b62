package containerinit

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capabilityNames lists the capabilities by number.
func capabilityNames() [41]string {
	return [...]string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// capabilityMask turns capability names into a bit mask; names this agent
// does not know are returned so they can be reported.
func capabilityMask(names []string) (mask uint64, unknown []string) {
	all := capabilityNames()
next:
	for _, n := range names {
		u := strings.ToUpper(n)
		if !strings.HasPrefix(u, "CAP_") {
			u = "CAP_" + u
		}
		for i, known := range all {
			if known == u {
				mask |= 1 << uint(i)
				continue next
			}
		}
		unknown = append(unknown, n)
	}
	return mask, unknown
}

// capSets is a process's capability sets as masks.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
	unknown                                              []string
}

func parseCapabilities(c *specs.LinuxCapabilities) capSets {
	var s capSets
	var u []string
	s.bounding, u = capabilityMask(c.Bounding)
	s.unknown = append(s.unknown, u...)
	s.effective, u = capabilityMask(c.Effective)
	s.unknown = append(s.unknown, u...)
	s.permitted, u = capabilityMask(c.Permitted)
	s.unknown = append(s.unknown, u...)
	s.inheritable, u = capabilityMask(c.Inheritable)
	s.unknown = append(s.unknown, u...)
	s.ambient, u = capabilityMask(c.Ambient)
	s.unknown = append(s.unknown, u...)
	return s
}

// setCredentials switches to the process's user and capabilities, on the
// current thread (the one that will execve): drop the bounding set while
// still privileged, keep the permitted set across the uid change, then set
// exactly what the spec asks for.
func setCredentials(p *specs.Process, w *warnings) error {
	var caps *capSets
	if p.Capabilities != nil {
		c := parseCapabilities(p.Capabilities)
		caps = &c
		if len(c.unknown) > 0 {
			w.add("ignored capabilities unknown to this agent: %v", c.unknown)
		}
		if err := dropBounding(c.bounding); err != nil {
			return err
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keep capabilities across setuid: %w", err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	u := p.User
	groups := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		groups[i] = int(g)
	}
	// Package syscall applies these to every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set additional groups %v: %w", u.AdditionalGids, err)
	}
	if err := syscall.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", u.GID, err)
	}
	if err := syscall.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", u.UID, err)
	}
	if caps == nil {
		return nil
	}
	if err := capset(caps.effective, caps.permitted, caps.inheritable); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for i := 0; i < 64; i++ {
		if caps.ambient&(1<<uint(i)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(i), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %d (it must be permitted and inheritable): %w", i, err)
		}
	}
	return unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0)
}

func dropBounding(keep uint64) error {
	for i := 0; i < 64; i++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err != nil {
			break // past the kernel's last capability
		}
		if keep&(1<<uint(i)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", i, err)
		}
	}
	return nil
}

func capset(effective, permitted, inheritable uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := 0; i < 2; i++ {
		shift := uint(32 * i)
		data[i].Effective = uint32(effective >> shift)
		data[i].Permitted = uint32(permitted >> shift)
		data[i].Inheritable = uint32(inheritable >> shift)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities (effective %#x permitted %#x inheritable %#x): %w", effective, permitted, inheritable, err)
	}
	return nil
}
