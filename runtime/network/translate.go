package network

import (
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// wanted reports whether l is a link Docker configured for the container and that therefore gets
// a NIC in the VM: an Ethernet link (veth, macvlan, ipvlan, ...) that is up. Loopback stays in
// the namespace, tuntaps are our own, and tunnels the kernel creates by itself in every namespace
// (tunl0, sit0, ...) are not Ethernet. A link Docker has moved in but not configured yet is still
// down: Docker sets the addresses first and brings it up last.
func wanted(l netlink.Link) bool {
	a := l.Attrs()
	if a.Flags&net.FlagLoopback != 0 || l.Type() == "tuntap" {
		return false
	}
	return a.EncapType == "ether" && len(a.HardwareAddr) == 6 && a.Flags&net.FlagUp != 0
}

// guestAddresses are the addresses the guest's NIC gets. IPv6 link-local ones are left out: the
// guest derives the same one from the same MAC.
func guestAddresses(addrs []netlink.Addr) []string {
	var out []string
	for _, a := range addrs {
		if a.IPNet == nil || a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	slices.Sort(out)
	return out
}

// guestInterface describes the NIC for link l and its addresses.
func guestInterface(l netlink.Link, addrs []netlink.Addr) agentproto.Interface {
	a := l.Attrs()
	return agentproto.Interface{
		Name:      a.Name,
		MAC:       a.HardwareAddr.String(),
		MTU:       a.MTU,
		Addresses: guestAddresses(addrs),
	}
}

// guestRoutes translates the namespace's main-table routes through plugged links (names: link
// index to name) for the guest. Routes the kernel derives from addresses are left out (the guest
// derives them too), and so are IPv6 link-local and multicast routes and routes through links the
// guest does not have.
func guestRoutes(routes []netlink.Route, names map[int]string) []agentproto.Route {
	var out []agentproto.Route
	for _, r := range routes {
		name, ok := names[r.LinkIndex]
		if !ok || r.Protocol == unix.RTPROT_KERNEL || (r.Table != 0 && r.Table != unix.RT_TABLE_MAIN) ||
			(r.Type != 0 && r.Type != unix.RTN_UNICAST) || r.MultiPath != nil {
			continue
		}
		if r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		gr := agentproto.Route{Device: name, Scope: scopeName(r.Scope), Metric: r.Priority, Family: family(r)}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
				gr.Dest = r.Dst.String()
			}
		}
		if r.Gw != nil {
			gr.Gateway = r.Gw.String()
		}
		if r.Src != nil {
			gr.Source = r.Src.String()
		}
		out = append(out, gr)
	}
	return out
}

func scopeName(s netlink.Scope) string {
	switch s {
	case netlink.SCOPE_LINK:
		return agentproto.ScopeLink
	case netlink.SCOPE_HOST:
		return agentproto.ScopeHost
	default:
		return ""
	}
}

// family is 4 or 6: from the route's family, else from whichever address it carries.
func family(r netlink.Route) int {
	switch r.Family {
	case unix.AF_INET:
		return 4
	case unix.AF_INET6:
		return 6
	}
	for _, ip := range []net.IP{r.Gw, r.Src} {
		if ip != nil {
			if ip.To4() != nil {
				return 4
			}
			return 6
		}
	}
	if r.Dst != nil && r.Dst.IP.To4() == nil {
		return 6
	}
	return 4
}
