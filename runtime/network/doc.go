// Package network wires a container's network namespace into its VM, the way Kata's default
// "tcfilter" model does, and relays Docker's embedded DNS into the guest.
//
// Docker configures the container's network in the namespace the task's pid lives in, which is
// QEMU's. For every Ethernet link Docker puts there (a veth, or a macvlan/ipvlan link), the
// Manager creates a tap device next to it, redirects all traffic between the two with tc (an
// ingress qdisc on each and a match-all u32 filter with a mirred egress redirect to the other),
// hot-plugs a virtio-net card backed by the tap into the VM with the link's MAC address, and
// hands the guest agent the link's name, MTU, addresses and routes (see connect in tcfilter.go
// for why the link keeps its addresses, and sharedFilters for the little traffic the namespace
// keeps: the answers to dockerd's DNS forwarding). It keeps watching the namespace (netlink
// notifications), so `docker network connect` and `disconnect` on a running container plug and
// unplug cards.
//
// Docker's embedded DNS server (127.0.0.11) lives in the namespace, not in the guest: the agent
// serves 127.0.0.11:53 in the guest and relays the queries to the shim, which asks dockerd from
// inside the namespace (dns.go).
//
// Nothing is created outside the container's namespace: the taps, qdiscs and filters live in it,
// and the taps are not persistent (they vanish when QEMU, which holds their only file, exits).
package network
