package network

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// The bridged wiring, for links of kata-deploy's kata-net network driver (plugin/network). Such a
// link is one end of a veth pair whose other end is a port of the network's bridge in the
// engine's namespace (the shim's), and carries the alias "kata-net:<host end>". The VM gets a
// tap of its own on that bridge in place of the veth's host end, which leaves the bridge: one
// hop from the guest to the bridge instead of two (tap, tc redirect, veth). The tap's ingress
// keeps the same anti-spoofing filters, letting the allowed frames on to the bridge. The link in
// the container's namespace keeps its addresses and routes: they are what the guest is told.

// kataNetAlias is the alias prefix the driver gives the container's end of its veth pairs.
const kataNetAlias = "kata-net:"

var kataNetHostVeth = regexp.MustCompile(`^knh[0-9a-f]{12}$`)

// bridgedHostVeth returns the host end of a kata-net link, if l is one.
func bridgedHostVeth(l netlink.Link) (string, bool) {
	host, ok := strings.CutPrefix(l.Attrs().Alias, kataNetAlias)
	if !ok || l.Type() != "veth" || !kataNetHostVeth.MatchString(host) {
		return "", false
	}
	return host, true
}

// bridgedTapName is the VM's tap for a host veth knhXXXXXXXXXXXX: ktXXXXXXXXXXXX.
func bridgedTapName(hostVeth string) string { return "kt" + strings.TrimPrefix(hostVeth, "knh") }

// plugBridged gives the VM a tap on the bridge of kata-net link l (host end hostVeth).
func (m *Manager) plugBridged(ctx context.Context, l netlink.Link, hostVeth string) (*port, error) {
	a := l.Attrs()
	hostNS, h, err := hostHandle()
	if err != nil {
		return nil, err
	}
	defer hostNS.Close()
	defer h.Close()
	bridge, veth, err := kataNetPort(h, hostVeth, a.Index)
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	name := bridgedTapName(hostVeth)
	if _, err := h.LinkByName(name); err == nil {
		return nil, fmt.Errorf("wiring %s into the VM: it is already wired into another VM (%s exists)", a.Name, name)
	}
	tap, tapIndex, err := newTap(hostNS, h, name, a.MTU)
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	defer tap.Close() // QEMU keeps its own copy; on failure the tap goes with this one
	addrs, err := listRetrying(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: listing its addresses: %w", a.Name, err)
	}
	src := sourceOf(a.HardwareAddr, addrs)
	tapLink, err := h.LinkByIndex(tapIndex)
	if err == nil {
		err = guardTap(h, tapIndex, 0, src)
	}
	if err == nil {
		err = h.LinkSetMaster(tapLink, bridge)
	}
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: putting tap %s on bridge %s: %w", a.Name, name, bridge.Attrs().Name, err)
	}
	hctx, cancel := context.WithTimeout(ctx, hotplugTimeout)
	defer cancel()
	p := &port{link: a.Index, tap: tapIndex, mac: a.HardwareAddr.String(), nicID: nicID(a.Index), src: src, bridged: true}
	if err := m.opts.VM.AddNIC(hctx, hypervisor.NIC{ID: p.nicID, MAC: a.HardwareAddr, Tap: tap}); err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	// Only now does the veth leave the bridge: frames for the guest's MAC go to the tap alone.
	if err := h.LinkSetNoMaster(veth); err != nil {
		m.opts.Logf("taking %s off bridge %s: %v", hostVeth, bridge.Attrs().Name, err)
	}
	return p, nil
}

// kataNetPort checks that hostVeth is a veth whose peer is link peerIndex and which is a port of
// a kata-net bridge, and returns the bridge and the veth.
func kataNetPort(h *netlink.Handle, hostVeth string, peerIndex int) (netlink.Link, netlink.Link, error) {
	veth, err := h.LinkByName(hostVeth)
	if err != nil {
		return nil, nil, fmt.Errorf("the kata-net link's host end %s: %w", hostVeth, err)
	}
	v, ok := veth.(*netlink.Veth)
	if !ok {
		return nil, nil, fmt.Errorf("%s is a %s, not a veth", hostVeth, veth.Type())
	}
	if peer, err := netlink.VethPeerIndex(v); err != nil || peer != peerIndex {
		return nil, nil, fmt.Errorf("%s is not the peer of the container's link (peer %d, %v)", hostVeth, peer, err)
	}
	bridge, err := h.LinkByIndex(veth.Attrs().MasterIndex)
	if err != nil || bridge.Type() != "bridge" || !strings.HasPrefix(bridge.Attrs().Name, "kn-") {
		return nil, nil, fmt.Errorf("%s is not a port of a kata-net bridge", hostVeth)
	}
	return bridge, veth, nil
}

// guardPort replaces the anti-spoofing filters of p's tap, in the namespace the tap is in.
func (m *Manager) guardPort(p *port, src guestSource) error {
	if !p.bridged {
		return guardTap(m.nl, p.tap, p.link, src)
	}
	hostNS, h, err := hostHandle()
	if err != nil {
		return err
	}
	defer hostNS.Close()
	defer h.Close()
	return guardTap(h, p.tap, 0, src)
}

// hostHandle opens the shim's own network namespace (its main thread's: a goroutine's thread may
// be elsewhere for a moment) and a netlink handle in it.
func hostHandle() (netns.NsHandle, *netlink.Handle, error) {
	hostNS, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return 0, nil, err
	}
	h, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		hostNS.Close()
		return 0, nil, err
	}
	return hostNS, h, nil
}
