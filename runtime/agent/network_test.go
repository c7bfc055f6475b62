package agent

import (
	"context"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestAddressChanges(t *testing.T) {
	have := []netlink.Addr{
		{IPNet: cidr(t, "172.18.0.2/16")},  // stays
		{IPNet: cidr(t, "10.0.0.5/8")},     // a network the container left
		{IPNet: cidr(t, "fe80::1/64")},     // the kernel's own: stays
		{IPNet: cidr(t, "fd00::0002/64")},  // stays (written differently below)
		{IPNet: cidr(t, "192.168.9.9/24")}, // goes
	}
	add, del := addressChanges(have, []string{"172.18.0.2/16", "fd00::2/64", "172.19.0.3/16"})
	var added, deleted []string
	for _, a := range add {
		added = append(added, a.IPNet.String())
	}
	for _, d := range del {
		deleted = append(deleted, d.IPNet.String())
	}
	if !slices.Equal(added, []string{"172.19.0.3/16"}) || !slices.Equal(deleted, []string{"10.0.0.5/8", "192.168.9.9/24"}) {
		t.Errorf("add %v, delete %v", added, deleted)
	}
	// IPv6 addresses skip duplicate address detection; IPv4 ones have nothing to skip.
	add, _ = addressChanges(nil, []string{"fd00::9/64", "10.1.1.1/24"})
	if add[0].Flags&unix.IFA_F_NODAD == 0 || add[1].Flags != 0 {
		t.Errorf("flags %#x %#x", add[0].Flags, add[1].Flags)
	}
}

func TestSortRoutes(t *testing.T) {
	in := []agentproto.Route{
		{Gateway: "172.18.0.1", Device: "eth0", Family: 4},
		{Dest: "10.0.0.0/8", Device: "eth1", Gateway: "172.19.0.1"},
		{Dest: "172.20.0.0/16", Device: "eth1", Scope: agentproto.ScopeLink},
		{Dest: "192.168.0.1/32", Device: "eth0", Scope: agentproto.ScopeHost},
		{Dest: "172.21.0.0/16", Device: "eth0"},
	}
	var got []string
	for _, r := range sortRoutes(in) {
		got = append(got, r.String())
	}
	want := []string{
		"192.168.0.1/32 dev eth0",
		"172.20.0.0/16 dev eth1",
		"172.21.0.0/16 dev eth0",
		"default via 172.18.0.1 dev eth0",
		"10.0.0.0/8 via 172.19.0.1 dev eth1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("order %q\nwant  %q", got, want)
	}
}

func TestToNetlinkRoute(t *testing.T) {
	tests := []struct {
		in   agentproto.Route
		want netlink.Route
	}{
		{agentproto.Route{Gateway: "172.18.0.1", Device: "eth0", Family: 4},
			netlink.Route{LinkIndex: 3, Gw: net.ParseIP("172.18.0.1"), Family: unix.AF_INET, Scope: netlink.SCOPE_UNIVERSE}},
		{agentproto.Route{Gateway: "fd00::1", Device: "eth0", Family: 6, Metric: 1024},
			netlink.Route{LinkIndex: 3, Gw: net.ParseIP("fd00::1"), Family: unix.AF_INET6, Priority: 1024}},
		{agentproto.Route{Dest: "10.0.0.0/8", Device: "eth0", Scope: agentproto.ScopeLink, Source: "10.0.0.2"},
			netlink.Route{LinkIndex: 3, Dst: cidr(t, "10.0.0.0/8"), Scope: netlink.SCOPE_LINK, Src: net.ParseIP("10.0.0.2"), Family: unix.AF_INET}},
	}
	for _, tt := range tests {
		got, err := toNetlinkRoute(tt.in, 3)
		if err != nil {
			t.Fatal(err)
		}
		want := tt.want
		want.Table, want.Protocol = unix.RT_TABLE_MAIN, unix.RTPROT_BOOT
		if want.Dst != nil {
			want.Dst.IP = want.Dst.IP.Mask(want.Dst.Mask)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.in, *got, want)
		}
	}
}

func TestSameRoute(t *testing.T) {
	def := &netlink.Route{LinkIndex: 2, Gw: net.ParseIP("172.18.0.1"), Family: unix.AF_INET}
	listed := &netlink.Route{LinkIndex: 2, Dst: cidr(t, "0.0.0.0/0"), Gw: net.ParseIP("172.18.0.1"), Family: unix.AF_INET}
	if !sameRoute(def, listed) {
		t.Error("a default route without destination differs from the listed 0.0.0.0/0")
	}
	other := *listed
	other.Gw = net.ParseIP("172.18.0.254")
	if sameRoute(def, &other) {
		t.Error("routes through different gateways compare equal")
	}
}

// The rest configures a real network namespace standing in for the guest (root only).

func requireRootNetNS(t *testing.T) *testNS {
	t.Helper()
	testreq.Short(t, "needs root and network namespaces")
	testreq.Root(t) // network namespaces
	guest, _ := newTestNS(t)
	_, peer := newTestNS(t)
	return &testNS{Handle: guest, peer: peer}
}

// testNS is a namespace standing in for the guest; the far ends of its cards are in peer.
type testNS struct {
	*netlink.Handle
	peer netns.NsHandle
}

func newTestNS(t *testing.T) (*netlink.Handle, netns.NsHandle) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("creating a network namespace: %v", err)
	}
	netns.Set(orig)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	return h, ns
}

// addNIC adds an Ethernet link standing in for a virtio-net card the kernel named name: one end
// of a veth pair, whose other end is in the peer namespace.
func addNIC(h *testNS, name, mac string) error {
	hw, _ := net.ParseMAC(mac)
	return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: "p" + name, PeerNamespace: netlink.NsFd(h.peer)})
}

func mustAddNIC(t *testing.T, h *testNS, name, mac string) {
	t.Helper()
	if err := addNIC(h, name, mac); err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
}

type linkState struct {
	name  string
	mtu   int
	up    bool
	addrs []string
}

func stateOf(t *testing.T, h *testNS, mac string) linkState {
	t.Helper()
	links, _ := h.LinkList()
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() != mac {
			continue
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_ALL)
		var as []string
		for _, a := range addrs {
			if !a.IP.IsLinkLocalUnicast() {
				as = append(as, a.IPNet.String())
			}
		}
		slices.Sort(as)
		return linkState{l.Attrs().Name, l.Attrs().MTU, l.Attrs().Flags&net.FlagUp != 0, as}
	}
	t.Fatalf("no link with MAC %s", mac)
	return linkState{}
}

func routesOf(t *testing.T, h *testNS) []string {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		l, _ := h.LinkByIndex(r.LinkIndex)
		out = append(out, cidrString(r.Dst)+" via "+r.Gw.String()+" dev "+l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}

func TestApplyNetwork(t *testing.T) {
	h := requireRootNetNS(t)
	const macA, macB = "02:42:ac:12:00:02", "02:42:ac:13:00:02"
	// The kernel probed the cards in the other order than Docker named the links.
	mustAddNIC(t, h, "eth0", macB)
	mustAddNIC(t, h, "eth1", macA)
	n := agentproto.Network{
		Interfaces: []agentproto.Interface{
			{Name: "eth0", MAC: macA, MTU: 1450, Addresses: []string{"172.18.0.2/16"}},
			{Name: "eth1", MAC: macB, MTU: 1500, Addresses: []string{"172.19.0.2/16", "fd00:19::2/64"}},
		},
		Routes: []agentproto.Route{
			{Gateway: "172.18.0.1", Device: "eth0", Family: 4},
			{Dest: "10.9.0.0/16", Gateway: "172.19.0.1", Device: "eth1"},
		},
	}
	if err := applyNetwork(context.Background(), h.Handle, n, time.Second); err != nil {
		t.Fatalf("applyNetwork: %v", err)
	}
	if got, want := stateOf(t, h, macA), (linkState{"eth0", 1450, true, []string{"172.18.0.2/16"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("card A: %+v, want %+v", got, want)
	}
	if got, want := stateOf(t, h, macB), (linkState{"eth1", 1500, true, []string{"172.19.0.2/16", "fd00:19::2/64"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("card B: %+v, want %+v", got, want)
	}
	if lo, _ := h.LinkByName("lo"); lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lo is down")
	}
	wantRoutes := []string{"10.9.0.0/16 via 172.19.0.1 dev eth1", "default via 172.18.0.1 dev eth0"}
	if got := routesOf(t, h); !slices.Equal(got, wantRoutes) {
		t.Errorf("routes %q, want %q", got, wantRoutes)
	}
	// Applying the same state again changes nothing and does not fail.
	if err := applyNetwork(context.Background(), h.Handle, n, time.Second); err != nil {
		t.Fatalf("applyNetwork again: %v", err)
	}
	if got := routesOf(t, h); !slices.Equal(got, wantRoutes) {
		t.Errorf("routes after the second apply %q, want %q", got, wantRoutes)
	}

	// docker network disconnect of the first network: card A leaves the configuration (it is
	// about to be unplugged) and the default route moves to the second network.
	n2 := agentproto.Network{
		Interfaces: []agentproto.Interface{{Name: "eth1", MAC: macB, MTU: 1500, Addresses: []string{"172.19.0.2/16"}}},
		Routes:     []agentproto.Route{{Gateway: "172.19.0.1", Device: "eth1", Family: 4}},
	}
	if err := applyNetwork(context.Background(), h.Handle, n2, time.Second); err != nil {
		t.Fatalf("applyNetwork after disconnect: %v", err)
	}
	if got := stateOf(t, h, macA); got.up || len(got.addrs) != 0 {
		t.Errorf("the card that left is %+v, want down without addresses", got)
	}
	if got, want := stateOf(t, h, macB), (linkState{"eth1", 1500, true, []string{"172.19.0.2/16"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("card B after disconnect: %+v, want %+v", got, want)
	}
	if got, want := routesOf(t, h), []string{"default via 172.19.0.1 dev eth1"}; !slices.Equal(got, want) {
		t.Errorf("routes after disconnect %q, want %q", got, want)
	}
}

func TestApplyNetworkMissingCard(t *testing.T) {
	h := requireRootNetNS(t)
	n := agentproto.Network{Interfaces: []agentproto.Interface{{Name: "eth0", MAC: "02:42:ac:12:00:09", MTU: 1500}}}
	start := time.Now()
	err := applyNetwork(context.Background(), h.Handle, n, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "02:42:ac:12:00:09") || !strings.Contains(err.Error(), "virtio_net") {
		t.Errorf("error %v, want one naming the MAC and the module to check", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond || waited > 5*time.Second {
		t.Errorf("gave up after %s, want about 300ms", waited)
	}
}

func TestApplyNetworkCardAppearsLate(t *testing.T) {
	h := requireRootNetNS(t)
	const mac = "02:42:ac:12:00:0a"
	added := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the guest kernel probes the hot-plugged card
		added <- addNIC(h, "eth7", mac)
	}()
	n := agentproto.Network{Interfaces: []agentproto.Interface{{Name: "eth0", MAC: mac, MTU: 1500, Addresses: []string{"10.5.0.2/24"}}}}
	if err := applyNetwork(context.Background(), h.Handle, n, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, h, mac); got.name != "eth0" || !got.up {
		t.Errorf("late card: %+v", got)
	}
}

// A card plugged before its interface was known (a pooled VM's spare) is found by its own MAC and
// given the interface's; applying again finds it by the interface's.
func TestApplyNetworkSpareCard(t *testing.T) {
	h := requireRootNetNS(t)
	const spare, mac = "02:6b:64:00:00:01", "02:42:ac:12:00:0b"
	mustAddNIC(t, h, "eth3", spare)
	n := agentproto.Network{Interfaces: []agentproto.Interface{{Name: "eth0", MAC: mac, MTU: 1500, Addresses: []string{"10.6.0.2/24"}, CardMAC: spare}}}
	for range 2 {
		if err := applyNetwork(context.Background(), h.Handle, n, time.Second); err != nil {
			t.Fatal(err)
		}
		if got, want := stateOf(t, h, mac), (linkState{"eth0", 1500, true, []string{"10.6.0.2/24"}}); !reflect.DeepEqual(got, want) {
			t.Errorf("the spare card: %+v, want %+v", got, want)
		}
	}
}
