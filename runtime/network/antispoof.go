package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Anti-spoofing. Everything the guest sends arrives on the tap's ingress and is redirected out of
// Docker's link onto the bridge, where other containers are. A guest whose kernel is hostile
// (root in a --privileged container, or a kernel exploit) can write any frame: forge a source MAC
// (poisoning the bridge's forwarding table), or an IP address, an ARP sender or an IPv6 neighbour
// advertisement of another container. --cap-drop NET_RAW is enforced by that very kernel, so the
// host checks instead: the tap's ingress lets through only frames from the NIC's MAC carrying one
// of the interface's addresses, and drops the rest.
//
// Allowed, each with the NIC's source MAC:
//   - IPv4 from one of the interface's IPv4 addresses;
//   - ARP whose sender hardware address is the NIC's and whose sender IP is one of the interface's
//     addresses, or 0.0.0.0 (an address probe, RFC 5227);
//   - IPv6 from one of the interface's IPv6 addresses or from the link-local address derived from
//     the MAC (EUI-64), except router advertisements and redirects (the guest is no router), and
//     neighbour advertisements only for one of those addresses; from the unspecified address only
//     neighbour solicitations (duplicate address detection).
//
// IPv6 packets whose first header is not ICMPv6 are allowed from a valid source whatever follows;
// an ICMPv6 message behind extension headers is therefore not inspected (the kernel's ND ignores
// neighbour discovery messages carried that way: hop limit 255 is required and RFC 6980 rejects
// fragmented ND).
//
// The rules are u32 filters with a mirred redirect; the final drop is a two-instruction cls_bpf
// program in direct-action mode (TC_ACT_SHOT), because hosts often lack act_gact.

// guestSource is what the guest may send as on one NIC.
type guestSource struct {
	mac net.HardwareAddr
	v4  []net.IP // 4-byte form
	v6  []net.IP // 16-byte form, the EUI-64 link-local included
}

// sourceOf returns the sources a NIC with mac and the link's addrs may use.
func sourceOf(mac net.HardwareAddr, addrs []netlink.Addr) guestSource {
	s := guestSource{mac: mac}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			if !slices.ContainsFunc(s.v4, ip4.Equal) {
				s.v4 = append(s.v4, ip4)
			}
		} else if ip6 := a.IP.To16(); ip6 != nil {
			if !slices.ContainsFunc(s.v6, ip6.Equal) {
				s.v6 = append(s.v6, ip6)
			}
		}
	}
	if ll := linkLocal(mac); ll != nil && !slices.ContainsFunc(s.v6, ll.Equal) {
		s.v6 = append(s.v6, ll)
	}
	return s
}

// equal tells whether two sources allow the same frames.
func (s guestSource) equal(o guestSource) bool {
	eq := func(a, b []net.IP) bool { return slices.EqualFunc(a, b, net.IP.Equal) }
	return s.mac.String() == o.mac.String() && eq(s.v4, o.v4) && eq(s.v6, o.v6)
}

// linkLocal is the EUI-64 link-local address of mac (RFC 4291 appendix A).
func linkLocal(mac net.HardwareAddr) net.IP {
	if len(mac) != 6 {
		return nil
	}
	ip := make(net.IP, net.IPv6len)
	ip[0], ip[1] = 0xfe, 0x80
	ip[8], ip[9], ip[10] = mac[0]^0x02, mac[1], mac[2]
	ip[11], ip[12] = 0xff, 0xfe
	ip[13], ip[14], ip[15] = mac[3], mac[4], mac[5]
	return ip
}

// Priorities on the tap's ingress: the allow rules from antiSpoofPriority up, the drop last.
const (
	antiSpoofPriority = 100
	dropPriority      = 0xff00
)

// ICMPv6 types the guest may not send as it likes.
const (
	icmp6RouterAdvert    = 134
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
	icmp6Redirect        = 137
)

// rule is one allow rule: frames of protocol matching every key.
type rule struct {
	protocol uint16
	keys     []netlink.TcU32Key
}

// allowRules lists the frames the guest may send (see above). u32 offsets count from the network
// header; the Ethernet source address is at -8.
func allowRules(s guestSource) []rule {
	mac := macKeys(s.mac)
	with := func(keys ...[]netlink.TcU32Key) []netlink.TcU32Key {
		out := slices.Clone(mac)
		for _, k := range keys {
			out = append(out, k...)
		}
		return out
	}
	var rules []rule
	for _, ip := range s.v4 {
		rules = append(rules, rule{unix.ETH_P_IP, with(bytesAt(12, ip))})
	}
	// ARP: sender hardware address at 8, sender IP at 14.
	arpSender := func(ip net.IP) []netlink.TcU32Key {
		b := append(append([]byte{}, s.mac...), ip...)
		return bytesAt(8, b)
	}
	for _, ip := range append(slices.Clone(s.v4), net.IPv4zero.To4()) {
		rules = append(rules, rule{unix.ETH_P_ARP, with(arpSender(ip))})
	}
	nextHeader := func(val, mask uint32) netlink.TcU32Key {
		return netlink.TcU32Key{Off: 4, Mask: mask << 8, Val: val << 8}
	}
	icmpType := func(val, mask uint32) netlink.TcU32Key {
		return netlink.TcU32Key{Off: 40, Mask: mask << 24, Val: val << 24}
	}
	icmp6 := nextHeader(unix.IPPROTO_ICMPV6, 0xff)
	for _, ip := range s.v6 {
		src := bytesAt(8, ip)
		for _, c := range byteCover(unix.IPPROTO_ICMPV6) {
			rules = append(rules, rule{unix.ETH_P_IPV6, with(src, []netlink.TcU32Key{nextHeader(c.val, c.mask)})})
		}
		for _, c := range byteCover(icmp6RouterAdvert, icmp6NeighborAdvert, icmp6Redirect) {
			rules = append(rules, rule{unix.ETH_P_IPV6, with(src, []netlink.TcU32Key{icmp6, icmpType(c.val, c.mask)})})
		}
		for _, target := range s.v6 {
			rules = append(rules, rule{unix.ETH_P_IPV6, with(src, []netlink.TcU32Key{icmp6, icmpType(icmp6NeighborAdvert, 0xff)}, bytesAt(48, target))})
		}
	}
	rules = append(rules, rule{unix.ETH_P_IPV6, with(bytesAt(8, net.IPv6unspecified), []netlink.TcU32Key{icmp6, icmpType(icmp6NeighborSolicit, 0xff)})})
	return rules
}

// macKeys match the Ethernet source address.
func macKeys(mac net.HardwareAddr) []netlink.TcU32Key {
	return []netlink.TcU32Key{
		{Off: -8, Mask: 0xffffffff, Val: binary.BigEndian.Uint32(mac[0:4])},
		{Off: -4, Mask: 0xffff0000, Val: uint32(binary.BigEndian.Uint16(mac[4:6])) << 16},
	}
}

// bytesAt matches b at offset off of the network header, in 32-bit words (the last one masked).
func bytesAt(off int32, b []byte) []netlink.TcU32Key {
	// Start at a word boundary: u32 needs aligned offsets.
	lead := int(off % 4)
	buf := append(make([]byte, lead), b...)
	var keys []netlink.TcU32Key
	for i := 0; i < len(buf); i += 4 {
		var word, mask [4]byte
		for j := range 4 {
			if i+j < len(buf) && i+j >= lead {
				word[j], mask[j] = buf[i+j], 0xff
			}
		}
		keys = append(keys, netlink.TcU32Key{
			Off:  off - int32(lead) + int32(i),
			Mask: binary.BigEndian.Uint32(mask[:]),
			Val:  binary.BigEndian.Uint32(word[:]),
		})
	}
	return keys
}

// masked is a byte value under a mask.
type masked struct{ val, mask uint32 }

// byteCover returns value/mask pairs that together match every byte value except the excluded
// ones, each value exactly once (a prefix cover).
func byteCover(excluded ...byte) []masked {
	var out []masked
	var walk func(prefix uint32, bits int)
	walk = func(prefix uint32, bits int) {
		mask := uint32(0xff) << (8 - bits) & 0xff
		hit := slices.ContainsFunc(excluded, func(e byte) bool { return uint32(e)&mask == prefix })
		switch {
		case !hit:
			out = append(out, masked{prefix, mask})
		case bits < 8:
			walk(prefix, bits+1)
			walk(prefix|1<<(7-bits), bits+1)
		}
	}
	walk(0, 0)
	return out
}

// antiSpoofFilters are the tap's ingress filters: the allowed frames are redirected to link (or,
// with link 0, let through: a tap on a bridge), the rest is dropped by the last filter.
func antiSpoofFilters(tap, link int, s guestSource, dropFD int) ([]netlink.Filter, error) {
	rules := allowRules(s)
	if antiSpoofPriority+len(rules) >= dropPriority {
		return nil, fmt.Errorf("the link has too many addresses to filter (%d rules)", len(rules))
	}
	var filters []netlink.Filter
	for i, r := range rules {
		// A match with no action is TC_ACT_OK: the frame goes on (to the bridge the tap is
		// a port of), and no later filter runs.
		var actions []netlink.Action
		if link != 0 {
			actions = []netlink.Action{&netlink.MirredAction{
				ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
				MirredAction: netlink.TCA_EGRESS_REDIR,
				Ifindex:      link,
			}}
		}
		filters = append(filters, &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: tap, Parent: ingressHandle, Priority: uint16(antiSpoofPriority + i), Protocol: r.protocol},
			Sel:         &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: r.keys},
			Actions:     actions,
		})
	}
	filters = append(filters, &netlink.BpfFilter{
		FilterAttrs:  netlink.FilterAttrs{LinkIndex: tap, Parent: ingressHandle, Priority: dropPriority, Protocol: unix.ETH_P_ALL},
		Fd:           dropFD,
		Name:         "kata-drop",
		DirectAction: true,
	})
	return filters, nil
}

// loadDropProgram loads a cls_bpf program that drops every packet (r0 = TC_ACT_SHOT; exit). The
// caller closes the returned descriptor once the filter holds the program.
func loadDropProgram() (int, error) {
	insns := []uint64{
		0xb7 | uint64(netlink.TC_ACT_SHOT)<<32, // mov64 r0, TC_ACT_SHOT
		0x95,                                   // exit
	}
	license := []byte("GPL\x00")
	attr := struct {
		progType, insnCnt  uint32
		insns, license     uint64
		logLevel, logSize  uint32
		logBuf             uint64
		kernVersion, flags uint32
	}{
		progType: unix.BPF_PROG_TYPE_SCHED_CLS,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, fmt.Errorf("loading the tc drop program: %w (the host kernel needs CONFIG_BPF_SYSCALL and cls_bpf)", errno)
	}
	return int(fd), nil
}

// guardTap installs the anti-spoofing filters on tap's ingress, replacing what was there.
func guardTap(h *netlink.Handle, tap, link int, s guestSource) error {
	if len(s.mac) != 6 {
		return errors.New("the link has no Ethernet address")
	}
	fd, err := loadDropProgram()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	filters, err := antiSpoofFilters(tap, link, s, fd)
	if err != nil {
		return err
	}
	if err := resetIngress(h, tap); err != nil {
		return err
	}
	for _, f := range filters {
		if err := h.FilterAdd(f); err != nil {
			return fmt.Errorf("adding an anti-spoofing tc filter on tap %d: %w (the host kernel needs cls_u32, act_mirred and cls_bpf)", tap, err)
		}
	}
	return nil
}
