package network

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// The Manager against a real network namespace (root only): a fake VM stands in for QEMU and
// keeps a copy of each tap's file as QEMU does, a fake agent records what the guest is told.

type fakeVM struct {
	mu      sync.Mutex
	nics    map[string]*os.File
	macs    map[string]string
	removed []string
}

func (v *fakeVM) AddNIC(_ context.Context, nic hypervisor.NIC) error {
	fd, err := unix.Dup(int(nic.Tap.Fd()))
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.nics[nic.ID]; ok {
		unix.Close(fd)
		return fmt.Errorf("NIC %s already plugged", nic.ID)
	}
	v.nics[nic.ID] = os.NewFile(uintptr(fd), nic.ID)
	v.macs[nic.ID] = nic.MAC.String()
	return nil
}

func (v *fakeVM) RemoveNIC(_ context.Context, id string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	f, ok := v.nics[id]
	if !ok {
		return fmt.Errorf("NIC %s not plugged", id)
	}
	f.Close()
	delete(v.nics, id)
	v.removed = append(v.removed, id)
	return nil
}

func (v *fakeVM) snapshot() (map[string]string, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	macs := map[string]string{}
	for id := range v.nics {
		macs[id] = v.macs[id]
	}
	return macs, slices.Clone(v.removed)
}

func (v *fakeVM) closeAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, f := range v.nics {
		f.Close()
	}
}

type fakeAgent struct {
	mu      sync.Mutex
	configs []agentproto.Network
	relays  int // DNS relay streams opened
}

func (a *fakeAgent) ConfigureNetwork(_ context.Context, n agentproto.Network) error {
	if err := n.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.configs = append(a.configs, n)
	return nil
}

func (a *fakeAgent) DNS(context.Context) (io.ReadWriteCloser, error) {
	a.mu.Lock()
	a.relays++
	a.mu.Unlock()
	host, guest := net.Pipe()
	go io.Copy(io.Discard, guest)
	return host, nil
}

func (a *fakeAgent) last() (agentproto.Network, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.configs) == 0 {
		return agentproto.Network{}, 0
	}
	return a.configs[len(a.configs)-1], len(a.configs)
}

func requireRoot(t *testing.T) {
	t.Helper()
	testreq.Short(t, "needs root and network namespaces")
	testreq.Root(t) // network namespaces, veths and taps
	testreq.Tun(t)
}

// newNetNS creates a network namespace and returns a handle to it, a netlink handle in it and a
// path that opens it.
func newNetNS(t *testing.T) (netns.NsHandle, *netlink.Handle, string) {
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
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	return ns, h, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
}

// addVeth creates a veth pair like Docker's: name in the container's namespace with mac and addr,
// up, plus a default route via gw; its peer in another namespace (Docker's is in the host's).
func addVeth(t *testing.T, h *netlink.Handle, peerNS netns.NsHandle, name, mac, addr, gw string) netlink.Link {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw, MTU: 1450}, PeerName: "p" + name, PeerNamespace: netlink.NsFd(peerNS)}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("adding veth %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(addr)
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if gw != "" {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// redirectsTo returns where the ingress filter of link index redirects to (0: none).
func redirectsTo(t *testing.T, h *netlink.Handle, index int) int {
	t.Helper()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return 0
	}
	filters, err := h.FilterList(l, ingressHandle)
	if err != nil {
		t.Fatalf("listing filters: %v", err)
	}
	for _, f := range filters {
		if u, ok := f.(*netlink.U32); ok {
			for _, a := range u.Actions {
				if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
					return m.Ifindex
				}
			}
		}
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestManagerInNamespace(t *testing.T) {
	requireRoot(t)
	_, h, path := newNetNS(t)
	peerNS, _, _ := newNetNS(t) // where Docker's end of the veths is: the host
	eth0 := addVeth(t, h, peerNS, "eth0", "02:42:ac:1e:00:02", "172.30.0.2/24", "172.30.0.1")
	vm := &fakeVM{nics: map[string]*os.File{}, macs: map[string]string{}}
	defer vm.closeAll()
	agent := &fakeAgent{}
	fdsBefore := openFDs(t)

	m, err := Start(context.Background(), Options{NetNSPath: path, VM: vm, Agent: agent, DNS: func() bool { return true }, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// One NIC with eth0's MAC, a tap wired both ways.
	nic0 := nicID(eth0.Attrs().Index)
	if macs, _ := vm.snapshot(); !reflect.DeepEqual(macs, map[string]string{nic0: "02:42:ac:1e:00:02"}) {
		t.Fatalf("plugged NICs %v, want %s with eth0's MAC", macs, nic0)
	}
	tap, err := h.LinkByName(tapName(eth0.Attrs().Index))
	if err != nil {
		t.Fatalf("no tap next to eth0: %v", err)
	}
	if tap.Type() != "tuntap" || tap.Attrs().MTU != 1450 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("tap: type %s, MTU %d, flags %v; want an up tuntap with eth0's MTU", tap.Type(), tap.Attrs().MTU, tap.Attrs().Flags)
	}
	if got := redirectsTo(t, h, eth0.Attrs().Index); got != tap.Attrs().Index {
		t.Errorf("eth0 redirects to %d, want the tap %d", got, tap.Attrs().Index)
	}
	if got := redirectsTo(t, h, tap.Attrs().Index); got != eth0.Attrs().Index {
		t.Errorf("the tap redirects to %d, want eth0 %d", got, eth0.Attrs().Index)
	}
	want := agentproto.Network{
		Interfaces: []agentproto.Interface{{Name: "eth0", MAC: "02:42:ac:1e:00:02", MTU: 1450, Addresses: []string{"172.30.0.2/24"}}},
		Routes:     []agentproto.Route{{Gateway: "172.30.0.1", Device: "eth0", Family: 4}},
	}
	if got, n := agent.last(); n != 1 || !reflect.DeepEqual(got, want) {
		t.Errorf("guest told %d times, last %+v\nwant once %+v", n, got, want)
	}

	// docker network connect: a second link appears, configured, then up.
	eth1 := addVeth(t, h, peerNS, "eth1", "02:42:ac:1f:00:02", "172.31.0.2/24", "")
	nic1 := nicID(eth1.Attrs().Index)
	eventually(t, "the second NIC", func() bool {
		macs, _ := vm.snapshot()
		return macs[nic1] == "02:42:ac:1f:00:02"
	})
	eventually(t, "the guest to learn about eth1", func() bool {
		got, _ := agent.last()
		return len(got.Interfaces) == 2 && got.Interfaces[1].Name == "eth1"
	})

	// docker network disconnect: the link leaves; the guest hears first, then the NIC goes.
	if err := h.LinkDel(eth1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NIC of eth1 to be unplugged", func() bool {
		_, removed := vm.snapshot()
		return slices.Equal(removed, []string{nic1})
	})
	if got, _ := agent.last(); !reflect.DeepEqual(got, want) {
		t.Errorf("after disconnect the guest was told %+v, want %+v", got, want)
	}
	eventually(t, "eth1's tap to vanish with the NIC", func() bool {
		_, err := h.LinkByName(tapName(eth1.Attrs().Index))
		return err != nil
	})

	// A reconcile without changes tells the guest nothing new.
	_, n := agent.last()
	if err := m.reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, n2 := agent.last(); n2 != n {
		t.Errorf("an idle reconcile configured the guest again (%d -> %d calls)", n, n2)
	}

	m.Close()
	m.Close()
	vm.closeAll() // QEMU's copies of the taps
	if after := openFDs(t); after != fdsBefore {
		t.Errorf("%d open files before Start, %d after Close: the Manager leaks descriptors", fdsBefore, after)
	}
}

func TestManagerClosesWithDone(t *testing.T) {
	requireRoot(t)
	_, h, path := newNetNS(t)
	peerNS, _, _ := newNetNS(t) // where Docker's end of the veths is: the host
	addVeth(t, h, peerNS, "eth0", "02:42:ac:1e:00:03", "172.30.0.3/24", "")
	vm := &fakeVM{nics: map[string]*os.File{}, macs: map[string]string{}}
	defer vm.closeAll()
	fdsBefore := openFDs(t)
	done := make(chan struct{})
	if _, err := Start(context.Background(), Options{NetNSPath: path, VM: vm, Agent: &fakeAgent{}, Done: done}); err != nil {
		t.Fatal(err)
	}
	close(done)
	vm.closeAll()
	eventually(t, "the Manager to close its descriptors once the VM is gone", func() bool { return openFDs(t) == fdsBefore })
}

func TestManagerNoNetwork(t *testing.T) {
	requireRoot(t)
	_, _, path := newNetNS(t) // only lo, as with --network none
	vm := &fakeVM{nics: map[string]*os.File{}, macs: map[string]string{}}
	agent := &fakeAgent{}
	m, err := Start(context.Background(), Options{NetNSPath: path, VM: vm, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if macs, _ := vm.snapshot(); len(macs) != 0 {
		t.Errorf("plugged %v into a VM without network", macs)
	}
	// The guest is still told, so that it brings lo up.
	if got, n := agent.last(); n != 1 || len(got.Interfaces) != 0 || len(got.Routes) != 0 {
		t.Errorf("guest told %d times: %+v; want once, empty", n, got)
	}
}

func TestManagerHotplugFailure(t *testing.T) {
	requireRoot(t)
	_, h, path := newNetNS(t)
	peerNS, _, _ := newNetNS(t) // where Docker's end of the veths is: the host
	eth0 := addVeth(t, h, peerNS, "eth0", "02:42:ac:1e:00:04", "172.30.0.4/24", "")
	_, err := Start(context.Background(), Options{NetNSPath: path, VM: failingVM{}, Agent: &fakeAgent{}})
	if err == nil {
		t.Fatal("Start succeeded although the VM refused the NIC")
	}
	// Nothing is left: no tap, no redirect on eth0 (its traffic would go nowhere).
	if _, err := h.LinkByName(tapName(eth0.Attrs().Index)); err == nil {
		t.Error("the tap outlived the failed hot-plug")
	}
	if got := redirectsTo(t, h, eth0.Attrs().Index); got != 0 {
		t.Errorf("eth0 still redirects to %d", got)
	}
}

type failingVM struct{}

func (failingVM) AddNIC(context.Context, hypervisor.NIC) error {
	return fmt.Errorf("%w: test", hypervisor.ErrNoNICSlot)
}
func (failingVM) RemoveNIC(context.Context, string) error { return nil }

// TestManagerKeepsNamespaceDNS: once the link is redirected to the VM, the namespace's own stack
// still gets the answers of the upstream DNS servers it asks (dockerd's embedded DNS forwarding
// a name outside Docker's networks), and nothing else.
func TestManagerKeepsNamespaceDNS(t *testing.T) {
	requireRoot(t)
	ns, h, path := newNetNS(t)
	peerNS, peer, _ := newNetNS(t)
	addVeth(t, h, peerNS, "eth0", "02:42:ac:1e:00:05", "172.30.0.5/24", "")
	pl, err := peer.LinkByName("peth0")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("172.30.0.1/24")
	if err := peer.AddrAdd(pl, a); err != nil {
		t.Fatal(err)
	}
	if err := peer.LinkSetUp(pl); err != nil {
		t.Fatal(err)
	}
	// An upstream DNS server in the peer namespace that echoes every datagram.
	var server *net.UDPConn
	if err := inNamespace(peerNS, func() (err error) {
		server, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(172, 30, 0, 1), Port: 53})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := server.ReadFromUDP(buf)
			if err != nil {
				return
			}
			server.WriteToUDP(buf[:n], from)
		}
	}()
	vm := &fakeVM{nics: map[string]*os.File{}, macs: map[string]string{}}
	defer vm.closeAll()
	m, err := Start(context.Background(), Options{NetNSPath: path, VM: vm, Agent: &fakeAgent{}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	var portRange []byte
	inNamespace(ns, func() (err error) {
		portRange, err = os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
		return err
	})
	if got := strings.Join(strings.Fields(string(portRange)), " "); got != nsPortRange {
		t.Errorf("the namespace's ephemeral ports are %q, want %q", got, nsPortRange)
	}
	ask := func(localPort int) error {
		var c *net.UDPConn
		if err := inNamespace(ns, func() (err error) {
			c, err = net.DialUDP("udp4", &net.UDPAddr{Port: localPort}, &net.UDPAddr{IP: net.IPv4(172, 30, 0, 1), Port: 53})
			return err
		}); err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("query")); err != nil {
			return err
		}
		_, err := c.Read(make([]byte, 16))
		return err
	}
	if err := ask(0); err != nil {
		t.Errorf("the namespace's DNS query from an ephemeral port got no answer: %v", err)
	}
	// Anything else arriving on the link belongs to the guest: an answer to a port outside the
	// namespace's range goes to the tap.
	if err := ask(40000); err == nil {
		t.Error("an answer to port 40000 reached the namespace instead of the guest")
	}
}

func (a *fakeAgent) relayCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relays
}

// TestManagerStartsDNSOnConnect: a container started without Docker's DNS gets the relay when a
// later docker network connect makes its resolv.conf name 127.0.0.11, which Docker writes a
// moment after the link appears; once only.
func TestManagerStartsDNSOnConnect(t *testing.T) {
	requireRoot(t)
	_, h, path := newNetNS(t)
	peerNS, _, _ := newNetNS(t)
	addVeth(t, h, peerNS, "eth0", "02:42:ac:1e:00:02", "172.30.0.2/24", "172.30.0.1")
	vm := &fakeVM{nics: map[string]*os.File{}, macs: map[string]string{}}
	defer vm.closeAll()
	agent := &fakeAgent{}
	var wanted atomic.Bool
	m, err := Start(context.Background(), Options{NetNSPath: path, VM: vm, Agent: agent, DNS: wanted.Load, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer m.Close()
	if n := agent.relayCount(); n != 0 {
		t.Fatalf("%d relays started for a resolv.conf without 127.0.0.11", n)
	}
	addVeth(t, h, peerNS, "eth1", "02:42:ac:1f:00:02", "172.31.0.2/24", "")
	time.Sleep(time.Second) // Docker rewrites resolv.conf after the link is configured
	wanted.Store(true)
	eventually(t, "the DNS relay to start", func() bool { return agent.relayCount() == 1 })
	if err := m.reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.watchDNS()
	time.Sleep(3 * dnsRecheckEvery)
	if n := agent.relayCount(); n != 1 {
		t.Errorf("%d relays started, want 1", n)
	}
}
