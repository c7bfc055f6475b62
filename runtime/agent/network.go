package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// nicWait bounds how long the agent waits for a hot-plugged NIC to show up: under emulation the
// guest kernel takes about a second to probe it.
const nicWait = 30 * time.Second

// guestNetwork is the agent's network state: the configuration requests (one at a time) and the
// DNS relay.
type guestNetwork struct {
	mu  sync.Mutex
	dns dnsRelay
}

// configureNetwork makes the guest's network match the request (see agentproto.OpNetwork).
func (s *Server) configureNetwork(ctx context.Context, req agentproto.Request) error {
	if req.Network == nil {
		return errors.New("network request without a configuration")
	}
	if err := req.Network.Validate(); err != nil {
		return err
	}
	if len(req.Network.Interfaces) > 0 {
		s.cfg.Modules.Need(agentproto.ModuleGroupNet)
	}
	s.net.mu.Lock()
	defer s.net.mu.Unlock()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening a netlink socket: %w", err)
	}
	defer h.Close()
	return applyNetwork(ctx, h, *req.Network, nicWait)
}

// applyNetwork brings lo up and converges the NICs and routes to n. NICs are found by MAC,
// waiting up to wait for hot-plugged ones to appear.
func applyNetwork(ctx context.Context, h *netlink.Handle, n agentproto.Network, wait time.Duration) error {
	if err := loopbackUp(h); err != nil {
		return err
	}
	links, err := awaitNICs(ctx, h, n.Interfaces, wait)
	if err != nil {
		return err
	}
	if err := readdressCards(h, n.Interfaces, links); err != nil {
		return err
	}
	if err := retireOthers(h, links); err != nil {
		return err
	}
	if err := renameNICs(h, n.Interfaces, links); err != nil {
		return err
	}
	byName := map[string]netlink.Link{}
	for i, in := range n.Interfaces {
		if err := configureNIC(h, links[i], in); err != nil {
			return err
		}
		byName[in.Name] = links[i]
	}
	return applyRoutes(h, n.Routes, byName)
}

func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bringing up the guest's loopback interface: %w", err)
	}
	return nil
}

// readdressCards gives the cards found by their Interface.CardMAC (plugged before their interface
// was known) the interface's MAC, down: they come up configured.
func readdressCards(h *netlink.Handle, ifs []agentproto.Interface, links []netlink.Link) error {
	for i, in := range ifs {
		mac, _ := net.ParseMAC(in.MAC) // validated
		if slices.Equal(links[i].Attrs().HardwareAddr, mac) {
			continue
		}
		err := h.LinkSetDown(links[i])
		if err == nil {
			err = h.LinkSetHardwareAddr(links[i], mac)
		}
		if err == nil {
			links[i], err = h.LinkByIndex(links[i].Attrs().Index)
		}
		if err != nil {
			return fmt.Errorf("giving the card %s the MAC %s of %s: %w", in.CardMAC, in.MAC, in.Name, err)
		}
	}
	return nil
}

// awaitNICs returns the link for each interface (same order), polling until all have appeared.
func awaitNICs(ctx context.Context, h *netlink.Handle, ifs []agentproto.Interface, wait time.Duration) ([]netlink.Link, error) {
	deadline := time.Now().Add(wait)
	for {
		all, err := h.LinkList()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("listing the guest's links: %w", err)
		}
		links, missing := matchByMAC(all, ifs)
		if missing == "" && err == nil {
			return links, nil
		}
		if time.Now().After(deadline) && missing != "" {
			return nil, fmt.Errorf("no network card with MAC %s appeared in the guest within %s: is virtio_net in the guest image (module group net, /etc/kata-deploy/modules.d/net.load)?", missing, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(nicPoll):
		}
	}
}

// nicPoll is how often awaitNICs looks: a hot-plugged card appears within a few hundred ms, and
// the container's start waits for it.
const nicPoll = 10 * time.Millisecond

// matchByMAC finds the link of each interface, by its MAC or else its card's (CardMAC); missing
// is the first MAC not found.
func matchByMAC(all []netlink.Link, ifs []agentproto.Interface) (links []netlink.Link, missing string) {
	links = make([]netlink.Link, len(ifs))
	for i, in := range ifs {
		links[i] = linkWithMAC(all, in.MAC)
		if links[i] == nil && in.CardMAC != "" {
			links[i] = linkWithMAC(all, in.CardMAC)
		}
		if links[i] == nil && missing == "" {
			missing = in.MAC
		}
	}
	return links, missing
}

// linkWithMAC is the Ethernet link with the (validated) MAC, or nil.
func linkWithMAC(all []netlink.Link, s string) netlink.Link {
	mac, _ := net.ParseMAC(s)
	for _, l := range all {
		if l.Attrs().EncapType == "ether" && slices.Equal(l.Attrs().HardwareAddr, mac) {
			return l
		}
	}
	return nil
}

// retireOthers takes down the Ethernet links that are not in the configuration (cards of networks
// the container left, about to be unplugged) and drops their addresses, so that no route or
// address of a network the container left stays in use.
func retireOthers(h *netlink.Handle, keep []netlink.Link) error {
	all, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing the guest's links: %w", err)
	}
	for _, l := range all {
		a := l.Attrs()
		if a.EncapType != "ether" || a.Flags&net.FlagLoopback != 0 || slices.ContainsFunc(keep, func(k netlink.Link) bool { return k.Attrs().Index == a.Index }) {
			continue
		}
		if err := h.LinkSetDown(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("taking down %s, which left the configuration: %w", a.Name, err)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			_ = h.AddrDel(l, &ad)
		}
	}
	return nil
}

// renameNICs gives the links their configured names. Names are swapped through temporary ones:
// the kernel names cards in the order it probes them, which need not be the order Docker named
// the container's links in, and another (retired) card may hold a wanted name.
func renameNICs(h *netlink.Handle, ifs []agentproto.Interface, links []netlink.Link) error {
	wanted := map[string]bool{}
	for _, in := range ifs {
		wanted[in.Name] = true
	}
	all, _ := h.LinkList()
	for _, l := range all {
		a := l.Attrs()
		mine := slices.IndexFunc(links, func(k netlink.Link) bool { return k.Attrs().Index == a.Index })
		if !wanted[a.Name] || (mine >= 0 && ifs[mine].Name == a.Name) {
			continue
		}
		if err := rename(h, l, "kdtmp"+strconv.Itoa(a.Index)); err != nil {
			return err
		}
	}
	for i, in := range ifs {
		if links[i].Attrs().Name == in.Name {
			continue
		}
		if err := rename(h, links[i], in.Name); err != nil {
			return err
		}
	}
	return nil
}

// rename renames a link; the kernel wants it down for that.
func rename(h *netlink.Handle, l netlink.Link, name string) error {
	if err := h.LinkSetDown(l); err != nil {
		return fmt.Errorf("taking down %s to rename it: %w", l.Attrs().Name, err)
	}
	if err := h.LinkSetName(l, name); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", l.Attrs().Name, name, err)
	}
	l.Attrs().Name = name
	return nil
}

// configureNIC sets the MTU and the addresses, then brings the link up.
func configureNIC(h *netlink.Handle, l netlink.Link, in agentproto.Interface) error {
	if l.Attrs().MTU != in.MTU {
		if err := h.LinkSetMTU(l, in.MTU); err != nil {
			return fmt.Errorf("setting the MTU of %s to %d: %w", in.Name, in.MTU, err)
		}
	}
	have, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", in.Name, err)
	}
	add, del := addressChanges(have, in.Addresses)
	for _, a := range del {
		if err := h.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing address %s from %s: %w", a.IPNet, in.Name, err)
		}
	}
	for _, a := range add {
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding address %s to %s: %w", a.IPNet, in.Name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing up %s: %w", in.Name, err)
	}
	return nil
}

// addressChanges compares a link's addresses with the wanted ones (CIDR strings, validated).
// IPv6 link-local addresses are the kernel's and stay.
func addressChanges(have []netlink.Addr, want []string) (add, del []*netlink.Addr) {
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[canonicalCIDR(w)] = true
	}
	present := map[string]bool{}
	for _, a := range have {
		if a.IPNet == nil || a.IP.IsLinkLocalUnicast() {
			continue
		}
		key := a.IPNet.String()
		present[key] = true
		if !wanted[key] {
			del = append(del, &a)
		}
	}
	for _, w := range want {
		if present[canonicalCIDR(w)] {
			continue
		}
		ip, ipnet, _ := net.ParseCIDR(w)
		ipnet.IP = ip
		a := &netlink.Addr{IPNet: ipnet}
		if ip.To4() == nil {
			// The address is the container's alone: duplicate address detection would only
			// keep it unusable for a second.
			a.Flags = unix.IFA_F_NODAD
		}
		add = append(add, a)
	}
	return add, del
}

// canonicalCIDR writes an address with its prefix the way net.IPNet.String does.
func canonicalCIDR(s string) string {
	ip, ipnet, err := net.ParseCIDR(s)
	if err != nil {
		return s
	}
	ipnet.IP = ip
	return ipnet.String()
}

// applyRoutes replaces the routes through the configured NICs with the wanted ones: routes the
// host no longer lists go (a default route of a network the container left), the others are
// added or replaced, those of narrower scope first so that gateways are reachable.
func applyRoutes(h *netlink.Handle, want []agentproto.Route, links map[string]netlink.Link) error {
	sorted := sortRoutes(want)
	var routes []*netlink.Route
	for _, r := range sorted {
		nr, err := toNetlinkRoute(r, links[r.Device].Attrs().Index)
		if err != nil {
			return err
		}
		routes = append(routes, nr)
	}
	have, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("listing the guest's routes: %w", err)
	}
	managed := map[int]bool{}
	for _, l := range links {
		managed[l.Attrs().Index] = true
	}
	for _, r := range have {
		if !managed[r.LinkIndex] || r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST ||
			(r.Dst != nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast())) {
			continue
		}
		if !slices.ContainsFunc(routes, func(w *netlink.Route) bool { return sameRoute(&r, w) }) {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("removing route %s: %w", r, err)
			}
		}
	}
	for i, r := range routes {
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("adding route %s: %w", sorted[i], err)
		}
	}
	return nil
}

// sortRoutes puts host and link scope routes before the ones through gateways, keeping the
// host's order otherwise.
func sortRoutes(rs []agentproto.Route) []agentproto.Route {
	out := slices.Clone(rs)
	rank := func(r agentproto.Route) int {
		switch {
		case r.Scope == agentproto.ScopeHost:
			return 0
		case r.Scope == agentproto.ScopeLink || r.Gateway == "":
			return 1
		default:
			return 2
		}
	}
	slices.SortStableFunc(out, func(a, b agentproto.Route) int { return rank(a) - rank(b) })
	return out
}

// toNetlinkRoute translates a validated route through link index.
func toNetlinkRoute(r agentproto.Route, index int) (*netlink.Route, error) {
	nr := &netlink.Route{LinkIndex: index, Table: unix.RT_TABLE_MAIN, Priority: r.Metric, Protocol: unix.RTPROT_BOOT}
	switch r.Scope {
	case agentproto.ScopeLink:
		nr.Scope = netlink.SCOPE_LINK
	case agentproto.ScopeHost:
		nr.Scope = netlink.SCOPE_HOST
	default:
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	nr.Family = unix.AF_INET
	if r.Family == 6 {
		nr.Family = unix.AF_INET6
	}
	if r.Dest != "" {
		_, dst, err := net.ParseCIDR(r.Dest)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r, err)
		}
		nr.Dst = dst
		if dst.IP.To4() == nil {
			nr.Family = unix.AF_INET6
		} else {
			nr.Family = unix.AF_INET
		}
	}
	if r.Gateway != "" {
		nr.Gw = net.ParseIP(r.Gateway)
	}
	if r.Source != "" {
		nr.Src = net.ParseIP(r.Source)
	}
	return nr, nil
}

// sameRoute compares what identifies a route in the main table, plus where it goes.
func sameRoute(a, b *netlink.Route) bool {
	return a.Family == b.Family && cidrString(a.Dst) == cidrString(b.Dst) && a.Priority == b.Priority && a.LinkIndex == b.LinkIndex &&
		a.Gw.Equal(b.Gw) && a.Scope == b.Scope && a.Src.Equal(b.Src)
}

// cidrString treats no destination and 0.0.0.0/0 (or ::/0) alike: both are the default route.
func cidrString(n *net.IPNet) string {
	if n == nil {
		return "default"
	}
	if ones, _ := n.Mask.Size(); ones == 0 && n.IP.IsUnspecified() {
		return "default"
	}
	return n.String()
}
