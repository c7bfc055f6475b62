package containerinit

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DeviceWrite is one line to write to a file of a cgroup v1 devices
// controller directory ("devices.allow" or "devices.deny").
type DeviceWrite struct {
	File string
	Line string
}

// runcDefaultDevices are the rules runc appends to every container's
// (libcontainer/specconv AllowedDevices): mknod of any node, the standard
// nodes, the container's ptys and /dev/net/tun.
func runcDefaultDevices() []specs.LinuxDeviceCgroup {
	n := func(v int64) *int64 { return &v }
	all := n(-1)
	return []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Major: all, Minor: all, Access: "m"},
		{Allow: true, Type: "b", Major: all, Minor: all, Access: "m"},
		{Allow: true, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},    // null
		{Allow: true, Type: "c", Major: n(1), Minor: n(8), Access: "rwm"},    // random
		{Allow: true, Type: "c", Major: n(1), Minor: n(7), Access: "rwm"},    // full
		{Allow: true, Type: "c", Major: n(5), Minor: n(0), Access: "rwm"},    // tty
		{Allow: true, Type: "c", Major: n(1), Minor: n(5), Access: "rwm"},    // zero
		{Allow: true, Type: "c", Major: n(1), Minor: n(9), Access: "rwm"},    // urandom
		{Allow: true, Type: "c", Major: n(136), Minor: all, Access: "rwm"},   // pts
		{Allow: true, Type: "c", Major: n(5), Minor: n(2), Access: "rwm"},    // ptmx
		{Allow: true, Type: "c", Major: n(10), Minor: n(200), Access: "rwm"}, // tun
	}
}

type devKey struct {
	typ          byte
	major, minor int64 // -1: any
}

func (k devKey) String() string {
	num := func(v int64) string {
		if v < 0 {
			return "*"
		}
		return strconv.FormatInt(v, 10)
	}
	return fmt.Sprintf("%c %s:%s", k.typ, num(k.major), num(k.minor))
}

// guestConsole says whether a device is one of the guest's own consoles
// (/dev/console, the virtual and serial ttys, hvc): what a container
// writes there goes to the VM's console, and on to the host's console log.
func (k devKey) guestConsole() bool {
	if k.typ != 'c' {
		return false
	}
	return (k.major == 5 && k.minor == 1) || k.major == 4 || k.major == 229
}

const devAccessAll = "rwm"

func accessBits(s string) (uint8, error) {
	if s == "" {
		s = devAccessAll
	}
	var b uint8
	for _, c := range s {
		i := strings.IndexRune(devAccessAll, c)
		if i < 0 {
			return 0, fmt.Errorf("device access %q: %q is not one of r, w, m", s, c)
		}
		b |= 1 << uint(i)
	}
	return b, nil
}

func accessString(b uint8) string {
	var s []byte
	for i := range devAccessAll {
		if b&(1<<uint(i)) != 0 {
			s = append(s, devAccessAll[i])
		}
	}
	return string(s)
}

// DeviceCgroupRules turns the spec's device rules into what runc writes to
// a cgroup v1 devices controller: the rules are applied in order, runc's
// defaults last, on the kernel's model (a default behaviour and a list of
// exceptions; a rule on all devices resets both). On top of runc, a
// container that is not allowed every device never gets the guest's own
// consoles (Docker allows c 5:1, which in a VM is the guest's real
// console): the returned notes say what was dropped.
func DeviceCgroupRules(rules []specs.LinuxDeviceCgroup) (writes []DeviceWrite, notes []string, err error) {
	defaultAllow := true // a new cgroup under the root allows everything
	var order []devKey
	exceptions := map[devKey]uint8{}
	for _, r := range append(append([]specs.LinuxDeviceCgroup(nil), rules...), runcDefaultDevices()...) {
		acc, err := accessBits(r.Access)
		if err != nil {
			return nil, nil, err
		}
		typ := r.Type
		if typ == "" {
			typ = "a"
		}
		if typ == "a" {
			defaultAllow = r.Allow
			order, exceptions = nil, map[devKey]uint8{}
			continue
		}
		if typ != "c" && typ != "b" {
			return nil, nil, fmt.Errorf("device rule type %q is not a, b or c", r.Type)
		}
		k := devKey{typ: typ[0], major: -1, minor: -1}
		if r.Major != nil && *r.Major >= 0 {
			k.major = *r.Major
		}
		if r.Minor != nil && *r.Minor >= 0 {
			k.minor = *r.Minor
		}
		if r.Allow == defaultAllow {
			if cur, ok := exceptions[k]; ok {
				if cur &^= acc; cur == 0 {
					delete(exceptions, k)
				} else {
					exceptions[k] = cur
				}
			}
			continue
		}
		if _, ok := exceptions[k]; !ok {
			order = append(order, k)
		}
		exceptions[k] |= acc
	}
	file, except := "devices.allow", "devices.deny"
	if !defaultAllow {
		file, except = except, file
	}
	writes = append(writes, DeviceWrite{File: file, Line: "a"})
	for _, k := range order {
		acc, ok := exceptions[k]
		if !ok {
			continue
		}
		if !defaultAllow && k.guestConsole() && acc&^4 != 0 {
			notes = append(notes, fmt.Sprintf("device %s: read and write left out, it is the guest's console", k))
			if acc &= 4; acc == 0 { // keep mknod, as for any other node
				continue
			}
		}
		writes = append(writes, DeviceWrite{File: except, Line: k.String() + " " + accessString(acc)})
	}
	return writes, notes, nil
}
