package network

import (
	"net"
	"reflect"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func mac(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

func TestWanted(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast
	tests := []struct {
		name string
		link netlink.Link
		want bool
	}{
		{"docker's veth, up", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", EncapType: "ether", HardwareAddr: mac(t, "02:42:ac:11:00:02"), Flags: up}}, true},
		{"macvlan, up", &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "eth1", EncapType: "ether", HardwareAddr: mac(t, "02:42:ac:11:00:03"), Flags: up}}, true},
		{"veth not configured yet (down)", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth1a2b", EncapType: "ether", HardwareAddr: mac(t, "02:42:ac:11:00:02"), Flags: net.FlagBroadcast}}, false},
		{"loopback", &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", EncapType: "loopback", Flags: net.FlagUp | net.FlagLoopback}}, false},
		{"our own tap", &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ktap2", EncapType: "ether", HardwareAddr: mac(t, "aa:bb:cc:dd:ee:ff"), Flags: up}}, false},
		{"kernel's ipip fallback tunnel", &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0", EncapType: "ipip", Flags: net.FlagUp}}, false},
		{"ether without a MAC", &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "x", EncapType: "ether", Flags: up}}, false},
	}
	for _, tt := range tests {
		if got := wanted(tt.link); got != tt.want {
			t.Errorf("%s: wanted = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestGuestInterface(t *testing.T) {
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1450, HardwareAddr: mac(t, "02:42:AC:11:00:02")}}
	addrs := []netlink.Addr{
		{IPNet: mustCIDR(t, "fe80::42:acff:fe11:2/64")}, // the guest makes its own
		{IPNet: mustCIDR(t, "172.17.0.2/16")},
		{IPNet: mustCIDR(t, "fd00:dead::2/64")},
	}
	got := guestInterface(l, addrs)
	want := agentproto.Interface{Name: "eth0", MAC: "02:42:ac:11:00:02", MTU: 1450, Addresses: []string{"172.17.0.2/16", "fd00:dead::2/64"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestInterface = %+v\nwant %+v", got, want)
	}
}

func TestGuestRoutes(t *testing.T) {
	names := map[int]string{5: "eth0", 7: "eth1"}
	routes := []netlink.Route{
		// Docker's default route on the first network.
		{LinkIndex: 5, Gw: net.ParseIP("172.18.0.1"), Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT},
		// netlink >= 1.2 reports the default route with a 0.0.0.0/0 destination.
		{LinkIndex: 7, Dst: mustCIDR(t, "0.0.0.0/0"), Gw: net.ParseIP("172.19.0.1"), Priority: 100, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN},
		// The connected route the kernel derives from the address: the guest derives it too.
		{LinkIndex: 5, Dst: mustCIDR(t, "172.18.0.0/16"), Src: net.ParseIP("172.18.0.2"), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_KERNEL, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN},
		// A static, link-scope route (docker network create --opt ... / a plugin).
		{LinkIndex: 7, Dst: mustCIDR(t, "10.10.0.0/16"), Scope: netlink.SCOPE_LINK, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC},
		// IPv6 default and link-local.
		{LinkIndex: 5, Dst: mustCIDR(t, "::/0"), Gw: net.ParseIP("fd00::1"), Priority: 1024, Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN},
		{LinkIndex: 5, Dst: mustCIDR(t, "fe80::/64"), Priority: 256, Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN},
		{LinkIndex: 5, Dst: mustCIDR(t, "ff00::/8"), Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_MULTICAST},
		// Through a link the guest does not have (lo, a link still being configured).
		{LinkIndex: 1, Dst: mustCIDR(t, "192.168.0.0/24"), Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN},
		// Another table.
		{LinkIndex: 5, Dst: mustCIDR(t, "192.168.1.0/24"), Family: unix.AF_INET, Table: 100},
	}
	want := []agentproto.Route{
		{Gateway: "172.18.0.1", Device: "eth0", Family: 4},
		{Gateway: "172.19.0.1", Device: "eth1", Family: 4, Metric: 100},
		{Dest: "10.10.0.0/16", Device: "eth1", Scope: agentproto.ScopeLink, Family: 4},
		{Gateway: "fd00::1", Device: "eth0", Family: 6, Metric: 1024},
	}
	got := guestRoutes(routes, names)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestRoutes =\n%+v\nwant\n%+v", got, want)
	}
	// Everything the host sends must pass the agent's validation.
	n := agentproto.Network{
		Interfaces: []agentproto.Interface{{Name: "eth0", MAC: "02:42:ac:12:00:02", MTU: 1500}, {Name: "eth1", MAC: "02:42:ac:13:00:02", MTU: 1500}},
		Routes:     got,
	}
	if err := n.Validate(); err != nil {
		t.Errorf("translated routes do not validate: %v", err)
	}
}

func TestFamily(t *testing.T) {
	tests := []struct {
		r    netlink.Route
		want int
	}{
		{netlink.Route{Family: unix.AF_INET6}, 6},
		{netlink.Route{Gw: net.ParseIP("10.0.0.1")}, 4},
		{netlink.Route{Gw: net.ParseIP("fd00::1")}, 6},
		{netlink.Route{Src: net.ParseIP("fd00::2")}, 6},
		{netlink.Route{Dst: mustCIDR(t, "fd00::/64")}, 6},
		{netlink.Route{}, 4},
	}
	for i, tt := range tests {
		if got := family(tt.r); got != tt.want {
			t.Errorf("%d: family = %d, want %d", i, got, tt.want)
		}
	}
}

func TestRedirectFilter(t *testing.T) {
	f := redirectFilter(3, 9)
	if f.LinkIndex != 3 || f.Parent != netlink.MakeHandle(0xffff, 0) || f.Protocol != unix.ETH_P_ALL || f.Sel != nil {
		t.Errorf("filter attributes %+v, sel %+v: want link 3, parent ffff:, all protocols, match-all selector", f.FilterAttrs, f.Sel)
	}
	if len(f.Actions) != 1 {
		t.Fatalf("%d actions, want 1", len(f.Actions))
	}
	m, ok := f.Actions[0].(*netlink.MirredAction)
	if !ok || m.MirredAction != netlink.TCA_EGRESS_REDIR || m.Ifindex != 9 || m.Attrs().Action != netlink.TC_ACT_STOLEN {
		t.Errorf("action %+v: want mirred egress redirect to 9, stolen", f.Actions[0])
	}
	q := ingressQdisc(3)
	if q.LinkIndex != 3 || q.Parent != netlink.HANDLE_INGRESS || q.Handle != netlink.MakeHandle(0xffff, 0) {
		t.Errorf("ingress qdisc %+v", q.QdiscAttrs)
	}
}

func TestNames(t *testing.T) {
	// Interface names have at most 15 bytes; ifindex is an int32.
	if n := tapName(2147483647); len(n) > 15 {
		t.Errorf("tap name %q is longer than IFNAMSIZ-1", n)
	}
	if tapName(4) == tapName(44) || nicID(4) != "nic4" {
		t.Errorf("names: %s %s %s", tapName(4), tapName(44), nicID(4))
	}
}

func TestSharedFilters(t *testing.T) {
	fs := sharedFilters(3, 9)
	if len(fs) != 7 {
		t.Fatalf("%d filters, want 7", len(fs))
	}
	wantProto := []uint16{unix.ETH_P_IP, unix.ETH_P_IP, unix.ETH_P_IPV6, unix.ETH_P_IPV6, unix.ETH_P_ARP, unix.ETH_P_IPV6, unix.ETH_P_IPV6}
	for i, f := range fs {
		if f.LinkIndex != 3 || f.Parent != ingressHandle || f.Protocol != wantProto[i] || int(f.Priority) != sharedPriority+i || f.Priority >= redirectPriority {
			t.Errorf("filter %d: %+v", i, f.FilterAttrs)
		}
	}
	// DNS answers to the namespace's ports: source port 53, destination 61440-65535.
	ports := netlink.TcU32Key{Off: 20, Mask: 0xfffff000, Val: 0x0035f000}
	if keys := fs[0].Sel.Keys; !slices.Contains(keys, ports) || !slices.Contains(keys, netlink.TcU32Key{Off: 8, Mask: 0x00ff0000, Val: 17 << 16}) {
		t.Errorf("IPv4 UDP keys %+v", keys)
	}
	if keys := fs[3].Sel.Keys; !slices.Contains(keys, netlink.TcU32Key{Off: 40, Mask: 0xfffff000, Val: 0x0035f000}) || !slices.Contains(keys, netlink.TcU32Key{Off: 4, Mask: 0x0000ff00, Val: 6 << 8}) {
		t.Errorf("IPv6 TCP keys %+v", keys)
	}
	for i := 0; i < 4; i++ {
		if len(fs[i].Actions) != 0 {
			t.Errorf("filter %d passes to the namespace, want no action, got %+v", i, fs[i].Actions)
		}
	}
	// Neighbour resolution: a copy to the tap, then on to the namespace.
	for _, i := range []int{4, 5, 6} {
		m, ok := fs[i].Actions[0].(*netlink.MirredAction)
		if len(fs[i].Actions) != 1 || !ok || m.MirredAction != netlink.TCA_EGRESS_MIRROR || m.Ifindex != 9 || m.Attrs().Action != netlink.TC_ACT_PIPE {
			t.Errorf("filter %d actions %+v: want a mirror to 9 that pipes on", i, fs[i].Actions)
		}
	}
	if fs[4].Sel != nil {
		t.Errorf("ARP filter selects %+v, want all ARP frames", fs[4].Sel)
	}
	if keys := fs[6].Sel.Keys; !slices.Contains(keys, netlink.TcU32Key{Off: 40, Mask: 0xff000000, Val: 136 << 24}) {
		t.Errorf("neighbour advertisement keys %+v", keys)
	}
}
