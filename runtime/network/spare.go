package network

// A spare card: a NIC plugged into a VM before its container exists (a pooled clone), backed by a
// tap in the VM's own network namespace. The guest probes it while the VM waits, so that the
// container's first network link (Start) takes it over instead of hot-plugging a card and waiting
// for the guest to probe it (about 0.1 s under TCG): the tap is renamed and redirected to the
// link, and the agent gives the card the link's MAC (agentproto.Interface.CardMAC).

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// SpareNIC is a card PlugSpare plugged.
type SpareNIC struct {
	ID  string `json:"id"`  // QEMU's device id
	MAC string `json:"mac"` // the card's MAC until a link takes it over
	Tap string `json:"tap"` // the tap's name in the VM's network namespace
}

// Names of the spare card: one per VM.
const (
	spareNICID  = "nicspare"
	spareTap    = "kspare0"
	spareMTU    = 1500
	spareOUIMac = 0x02 // locally administered, unicast
)

// PlugSpare creates a tap in the VM's network namespace (netnsPath) and plugs a card backed by it
// into vm, with a random locally administered MAC.
func PlugSpare(ctx context.Context, vm VM, netnsPath string) (SpareNIC, error) {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return SpareNIC{}, fmt.Errorf("the VM's network namespace %s: %w", netnsPath, err)
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return SpareNIC{}, err
	}
	defer nl.Close()
	tap, _, err := newTap(ns, nl, spareTap, spareMTU)
	if err != nil {
		return SpareNIC{}, err
	}
	// QEMU keeps its copy; the tap lives as long as QEMU.
	defer tap.Close()
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = spareOUIMac
	hctx, cancel := context.WithTimeout(ctx, hotplugTimeout)
	defer cancel()
	if err := vm.AddNIC(hctx, hypervisor.NIC{ID: spareNICID, MAC: mac, Tap: tap}); err != nil {
		return SpareNIC{}, err
	}
	return SpareNIC{ID: spareNICID, MAC: mac.String(), Tap: spareTap}, nil
}

// plugSpare wires link l to the spare card: its tap renamed after l, sized to l's MTU and
// redirected to l.
func (m *Manager) plugSpare(l netlink.Link, spare *SpareNIC) (*port, error) {
	a := l.Attrs()
	tap, err := m.nl.LinkByName(spare.Tap)
	if err != nil {
		return nil, fmt.Errorf("the spare card's tap %s: %w", spare.Tap, err)
	}
	err = m.nl.LinkSetDown(tap)
	if err == nil {
		err = m.nl.LinkSetName(tap, tapName(a.Index))
	}
	if err == nil {
		err = m.nl.LinkSetMTU(tap, a.MTU)
	}
	if err == nil {
		err = m.nl.LinkSetUp(tap)
	}
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM through the spare card: %w", a.Name, err)
	}
	addrs, err := listRetrying(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: listing its addresses: %w", a.Name, err)
	}
	src := sourceOf(a.HardwareAddr, addrs)
	if err := connect(m.nl, a.Index, tap.Attrs().Index, src); err != nil {
		disconnect(m.nl, a.Index)
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	return &port{link: a.Index, tap: tap.Attrs().Index, mac: a.HardwareAddr.String(), nicID: spare.ID, src: src, cardMAC: spare.MAC}, nil
}

// dropSpare unplugs the spare card when no link took it (--network none, a kata-net network):
// the container must not see a card of no network.
func (m *Manager) dropSpare(ctx context.Context) error {
	m.mu.Lock() // the watch may reconcile meanwhile
	defer m.mu.Unlock()
	spare := m.opts.Spare
	if spare == nil {
		return nil
	}
	m.opts.Spare = nil
	uctx, cancel := context.WithTimeout(ctx, unplugTimeout)
	defer cancel()
	if err := m.opts.VM.RemoveNIC(uctx, spare.ID); err != nil {
		return fmt.Errorf("unplugging the unused spare card: %w", err)
	}
	if tap, err := m.nl.LinkByName(spare.Tap); err == nil {
		_ = m.nl.LinkDel(tap) // gone with QEMU's copy anyway
	}
	return nil
}
