package network

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
)

// HostLinks is Links on the calling process's network namespace, with netlink. Owner tags (as
// the alias) the bridges and host veths it makes, and Names lists only those: another driver
// instance in the same namespace (another name, its own state) keeps its links at our start.
type HostLinks struct {
	Owner string
}

// OwnerAlias is the Owner of the driver called name.
func OwnerAlias(name string) string { return "kata-net-driver:" + name }

func (hl HostLinks) EnsureBridge(name, gatewayCIDR string, mtu int) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = name, mtu
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		l, err = netlink.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return fmt.Errorf("%s exists and is a %s, not a bridge: remove it or use another network", name, l.Type())
	}
	if err := netlink.LinkSetAlias(l, hl.Owner); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	addr, err := netlink.ParseAddr(gatewayCIDR)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("give bridge %s address %s: %w", name, gatewayCIDR, err)
	}
	return netlink.LinkSetUp(l)
}

func (HostLinks) DeleteBridge(name string) error { return deleteLink(name) }

func (hl HostLinks) EnsureVeth(host, peer, bridge, mac string, mtu int) error {
	if _, err := netlink.LinkByName(host); err == nil {
		return nil
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.MTU, attrs.MasterIndex = host, mtu, br.Attrs().Index
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer, PeerHardwareAddr: hw}); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", host, peer, err)
	}
	l, err := netlink.LinkByName(host)
	if err == nil {
		err = netlink.LinkSetAlias(l, hl.Owner)
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err == nil {
		err = markPeer(peer, host)
	}
	if err != nil {
		deleteLink(host)
		return fmt.Errorf("veth %s: %w", host, err)
	}
	return nil
}

func (HostLinks) DeleteVeth(host string) error { return deleteLink(host) }

func (hl HostLinks) Names(prefix string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) && l.Attrs().Alias == hl.Owner {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// deleteLink removes a link; one already gone is fine.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// PeerAlias is the alias of an endpoint's container end: "kata-net:<host end>". It moves with the
// link into the container and survives Docker's rename; the kata runtime reads it to put the VM's
// tap on the bridge in place of the host end (runtime/network, bridged.go).
const PeerAlias = "kata-net:"

func markPeer(peer, host string) error {
	l, err := netlink.LinkByName(peer)
	if err != nil {
		return err
	}
	return netlink.LinkSetAlias(l, PeerAlias+host)
}
