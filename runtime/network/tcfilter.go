package network

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ingressHandle is the handle of every ingress qdisc (ffff:).
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// ingressQdisc is the ingress qdisc of link index: it lets filters see every frame the link
// receives, before the namespace's IP stack does.
func ingressQdisc(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index,
		Handle:    ingressHandle,
		Parent:    netlink.HANDLE_INGRESS,
	}}
}

// Filter priorities on a link's ingress: what the namespace's stack keeps or shares first (see
// sharedFilters), then everything else to the tap.
const (
	sharedPriority   = 1 // .. sharedPriority+6
	redirectPriority = 10
)

// redirectFilter matches every frame arriving on link from (u32 with an empty selector matches
// all) and sends it out of link to, stealing it from the namespace's stack.
func redirectFilter(from, to int) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from,
			Parent:    ingressHandle,
			Priority:  redirectPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	}
}

// The namespace's own stack has one client left once the link is redirected: dockerd's embedded
// DNS server forwards the names it does not know (anything outside Docker's networks) to the
// upstream servers from inside the namespace, with the container's address and MAC. The answers
// come back through the link, where the redirect would hand them to the guest, and external names
// would not resolve on user-defined networks (as in upstream Kata). So:
//   - the namespace gets its own ephemeral ports, 61440-65535 (the guest's are 32768-60999,
//     Linux's default), and DNS answers (source port 53, UDP or TCP) to those ports stay in the
//     namespace; a guest's own DNS answers go to its own ports and still reach it;
//   - neighbour resolution (ARP, IPv6 neighbour solicitations and advertisements) reaches both:
//     copied to the guest and passed on to the namespace. Both answer for the same address with
//     the same MAC, so a duplicate answer is identical to the first.
//
// Everything else arriving on the link goes to the guest only.
const (
	nsPortRange = "61440 65535"
	nsPortMask  = 0xf000 // dport & nsPortMask == nsPortMask: 61440-65535
	dnsPort     = 53
)

// sharedFilters are the filters on link that come before the redirect to tap (see above). u32
// offsets count from the network header; values are host-order views of big-endian words. IPv4
// packets with options, later fragments and IPv6 packets with extension headers do not match and
// go to the guest.
func sharedFilters(link, tap int) []*netlink.U32 {
	ports := netlink.TcU32Key{Off: 20, Mask: 0xffff0000 | nsPortMask, Val: dnsPort<<16 | nsPortMask}
	v4 := func(proto uint32) []netlink.TcU32Key {
		return []netlink.TcU32Key{
			{Off: 0, Mask: 0xff000000, Val: 0x45000000}, // version 4, 20-byte header
			{Off: 4, Mask: 0x00001fff, Val: 0},          // fragment offset 0
			{Off: 8, Mask: 0x00ff0000, Val: proto << 16},
			ports,
		}
	}
	v6 := func(proto uint32) []netlink.TcU32Key {
		p := ports
		p.Off = 40
		return []netlink.TcU32Key{{Off: 4, Mask: 0x0000ff00, Val: proto << 8}, p}
	}
	ndp := func(icmpType uint32) []netlink.TcU32Key {
		return []netlink.TcU32Key{
			{Off: 4, Mask: 0x0000ff00, Val: unix.IPPROTO_ICMPV6 << 8},
			{Off: 40, Mask: 0xff000000, Val: icmpType << 24},
		}
	}
	// A match without an action ends the classification with "ok": the packet goes on to the
	// namespace's stack (the gact module, "action pass", is often absent).
	pass := []netlink.Action(nil)
	// Mirror to the guest, then go on ("pipe") to the namespace's stack.
	both := []netlink.Action{&netlink.MirredAction{
		ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_PIPE},
		MirredAction: netlink.TCA_EGRESS_MIRROR,
		Ifindex:      tap,
	}}
	sets := []struct {
		protocol uint16
		keys     []netlink.TcU32Key // nil: all frames of the protocol
		actions  []netlink.Action
	}{
		{unix.ETH_P_IP, v4(unix.IPPROTO_UDP), pass},
		{unix.ETH_P_IP, v4(unix.IPPROTO_TCP), pass},
		{unix.ETH_P_IPV6, v6(unix.IPPROTO_UDP), pass},
		{unix.ETH_P_IPV6, v6(unix.IPPROTO_TCP), pass},
		{unix.ETH_P_ARP, nil, both},
		{unix.ETH_P_IPV6, ndp(135), both}, // neighbour solicitation
		{unix.ETH_P_IPV6, ndp(136), both}, // neighbour advertisement
	}
	var filters []*netlink.U32
	for i, set := range sets {
		f := &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: link,
				Parent:    ingressHandle,
				Priority:  uint16(sharedPriority + i),
				Protocol:  set.protocol,
			},
			ClassId: netlink.MakeHandle(1, 1),
			Actions: set.actions,
		}
		if set.keys != nil {
			f.Sel = &netlink.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: set.keys}
		}
		filters = append(filters, f)
	}
	return filters
}

// reservePorts gives the namespace's stack the ephemeral ports sharedFilters let through.
func reservePorts(ns netns.NsHandle) error {
	// Network sysctls belong to the namespace of the thread that opens them.
	return inNamespace(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(nsPortRange), 0o644)
	})
}

// connect joins link and tap: each one's ingress goes out through the other, except what the
// namespace's own stack keeps or shares (see sharedFilters), and what the guest may not send as
// src (see guardTap).
//
// The link keeps the addresses Docker gave it, as in Kata, and that is what makes the traffic
// work: the ingress filters take every frame the link receives before the namespace's IP stack
// sees it, so the guest, with the same MAC and addresses, is the one that answers (TCP, UDP,
// ICMP); the namespace only sees the neighbour resolution it needs for its own DNS forwarding,
// and its ARP/NDP answers are identical to the guest's (same address, same MAC). Removing the
// addresses would gain nothing and lose much: dockerd's DNS forwarding from the namespace would
// have no source address or route, Docker would find the link changed under it, and the Manager
// reads the addresses and routes there as the source of truth for the guest (and notices changes
// to them). The namespace's egress is untouched; loopback (127.0.0.11) is not affected at all.
func connect(h *netlink.Handle, link, tap int, src guestSource) error {
	if err := resetIngress(h, link); err != nil {
		return err
	}
	for _, f := range sharedFilters(link, tap) {
		if err := h.FilterAdd(f); err != nil {
			return fmt.Errorf("adding a tc filter for the namespace's own traffic on link %d: %w (the host kernel needs cls_u32 and act_mirred)", link, err)
		}
	}
	if err := h.FilterAdd(redirectFilter(link, tap)); err != nil {
		return fmt.Errorf("adding the tc redirect filter from link %d to link %d: %w (the host kernel needs cls_u32 and act_mirred)", link, tap, err)
	}
	return guardTap(h, tap, link, src)
}

// resetIngress gives link index a fresh ingress qdisc, dropping an old one and its filters (left by
// an attempt that failed half way).
func resetIngress(h *netlink.Handle, index int) error {
	if err := h.QdiscDel(ingressQdisc(index)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("removing the ingress qdisc of link %d: %w", index, err)
	}
	if err := h.QdiscAdd(ingressQdisc(index)); err != nil {
		return fmt.Errorf("adding an ingress qdisc to link %d: %w (the host kernel needs sch_ingress)", index, err)
	}
	return nil
}

// disconnect removes the redirect from link (best effort: the link may be gone already).
func disconnect(h *netlink.Handle, link int) {
	_ = h.QdiscDel(ingressQdisc(link))
}

// newTap creates a tap device named name in the namespace ns with the given MTU, up, and returns
// its only file and its index. The tap is not persistent: it exists while a file of it is open,
// so once QEMU holds a copy and the caller closed this one, it goes away with QEMU. Single queue
// (no vhost-net to feed several), with a virtio-net header so the guest gets offloads (TSO,
// checksums).
func newTap(ns netns.NsHandle, h *netlink.Handle, name string, mtu int) (*os.File, int, error) {
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		Queues:     1,
		NonPersist: true,
	}
	// The tun device joins the namespace of the thread that opens /dev/net/tun.
	if err := inNamespace(ns, func() error { return h.LinkAdd(tap) }); err != nil {
		return nil, 0, fmt.Errorf("creating tap %s: %w (the host needs /dev/net/tun and the tun module)", name, err)
	}
	if len(tap.Fds) != 1 {
		for _, f := range tap.Fds {
			f.Close()
		}
		return nil, 0, fmt.Errorf("creating tap %s: got %d queues, want 1", name, len(tap.Fds))
	}
	file := tap.Fds[0]
	link, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetMTU(link, mtu)
	}
	if err == nil {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		file.Close()
		return nil, 0, fmt.Errorf("setting up tap %s: %w", name, err)
	}
	return file, link.Attrs().Index, nil
}
