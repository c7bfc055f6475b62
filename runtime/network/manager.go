package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// VM hot-plugs NICs (hypervisor.VM).
type VM interface {
	AddNIC(ctx context.Context, nic hypervisor.NIC) error
	RemoveNIC(ctx context.Context, id string) error
}

// Agent configures the guest (agentproto.Client).
type Agent interface {
	ConfigureNetwork(ctx context.Context, n agentproto.Network) error
	DNS(ctx context.Context) (io.ReadWriteCloser, error)
}

// Options configure Start.
type Options struct {
	// NetNSPath is the container's network namespace, /proc/<QEMU's pid>/ns/net.
	NetNSPath string
	VM        VM
	Agent     Agent
	// DNS reports whether the container's resolv.conf names 127.0.0.11: then the guest's queries
	// to 127.0.0.11:53 are relayed to Docker's embedded DNS server. It is asked at Start and again
	// after the namespace changes (docker network connect to a first user network rewrites
	// resolv.conf), until it says yes. Nil means never.
	DNS func() bool
	// Done ends the Manager when closed: the VM or the agent session is gone.
	Done <-chan struct{}
	// Logf receives what goes wrong after Start returned (hot-plug on network connect, ...).
	Logf func(format string, args ...any)
	// Spare, if set, is a card already plugged (PlugSpare): the first link takes it over; Start
	// unplugs it if none does.
	Spare *SpareNIC
}

// Timeouts. A guest under emulation takes about a second to probe a hot-plugged card; the agent
// waits for it within configureTimeout.
const (
	hotplugTimeout   = 30 * time.Second
	unplugTimeout    = 15 * time.Second
	configureTimeout = 60 * time.Second
	// settle is how long the namespace must be quiet before the Manager acts on a change: Docker
	// sets a link's addresses and routes in several steps.
	settle = 100 * time.Millisecond
)

// Manager keeps a VM's NICs in step with the container's network namespace.
type Manager struct {
	opts Options
	ns   netns.NsHandle
	nl   *netlink.Handle

	ctx    context.Context // ends when the Manager closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // serializes reconcile
	plugged map[int]*port
	sent    *agentproto.Network

	dns dnsStart // dnsstart.go

	closeOnce sync.Once
}

// port is one link of the namespace wired to a NIC in the VM.
type port struct {
	link  int // index of Docker's link
	tap   int // index of the tap
	mac   string
	nicID string
	src   guestSource // what the tap's ingress lets the guest send as
	// bridged: the tap is a port of a kata-net bridge in the shim's namespace (bridged.go).
	bridged bool
	// cardMAC is the MAC of a spare card the link took over (spare.go), which the guest changes
	// to mac.
	cardMAC string
}

// Start wires every link Docker configured in the namespace into the VM, configures the guest,
// starts the DNS relay if asked, and keeps watching the namespace until Close or opts.Done. On
// error nothing is left running (the NICs already plugged go away with the VM).
func Start(ctx context.Context, opts Options) (_ *Manager, err error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	m := &Manager{opts: opts, plugged: map[int]*port{}}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if m.ns, err = netns.GetFromPath(opts.NetNSPath); err != nil {
		m.cancel()
		return nil, fmt.Errorf("opening the container's network namespace %s: %w", opts.NetNSPath, err)
	}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.nl, err = netlink.NewHandleAt(m.ns, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("opening a netlink socket in the container's network namespace: %w", err)
	}
	if err := reservePorts(m.ns); err != nil {
		// Only names outside Docker's networks suffer (see sharedFilters).
		opts.Logf("reserving ephemeral ports in the container's network namespace: %v; names outside Docker's networks may not resolve", err)
	}
	// Subscribe before the first look, so that no change falls between the two.
	events, err := subscribe(m.ns)
	if err != nil {
		return nil, err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watch(events)
	}()
	if err := m.reconcile(ctx); err != nil {
		return nil, err
	}
	if err := m.dropSpare(ctx); err != nil {
		return nil, err
	}
	if err := m.ensureDNS(ctx); err != nil {
		return nil, err
	}
	if opts.Done != nil {
		go func() {
			select {
			case <-opts.Done:
				m.Close()
			case <-m.ctx.Done():
			}
		}()
	}
	return m, nil
}

// Close stops watching and relaying and closes the namespace. It leaves the NICs and taps alone:
// they go away with the VM. Safe to call more than once.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.wg.Wait()
		if m.nl != nil {
			m.nl.Close()
		}
		m.ns.Close()
	})
	return nil
}

// reconcile makes the VM's NICs and the guest's configuration match the namespace: new links
// are plugged, links that left are unplugged, and the guest gets the current configuration if it
// changed.
func (m *Manager) reconcile(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	links, err := listRetrying(m.nl.LinkList)
	if err != nil {
		return fmt.Errorf("listing the links of the container's network namespace: %w", err)
	}
	current := map[int]netlink.Link{}
	for _, l := range links {
		if wanted(l) {
			current[l.Attrs().Index] = l
		}
	}
	var gone []*port
	for idx, p := range m.plugged {
		if l, ok := current[idx]; !ok || l.Attrs().HardwareAddr.String() != p.mac {
			gone = append(gone, p)
			delete(m.plugged, idx)
		}
	}
	var errs []error
	for _, idx := range slices.Sorted(maps.Keys(current)) {
		if _, ok := m.plugged[idx]; ok {
			continue
		}
		p, err := m.plug(ctx, current[idx])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.plugged[idx] = p
	}
	if err := m.guardTaps(current); err != nil {
		errs = append(errs, err)
	}
	// The guest learns about removed NICs before they are unplugged, so that it drops their
	// routes cleanly, and about new ones once they are plugged.
	if err := m.configureGuest(ctx, current); err != nil {
		errs = append(errs, err)
	}
	for _, p := range gone {
		if err := m.unplug(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Names in the namespace and in QEMU, derived from the link's index (unique in the namespace).
func tapName(link int) string { return "ktap" + strconv.Itoa(link) }
func nicID(link int) string   { return "nic" + strconv.Itoa(link) }

// plug creates a tap for link l, redirects traffic between them and hot-plugs a NIC with l's MAC.
func (m *Manager) plug(ctx context.Context, l netlink.Link) (*port, error) {
	if host, ok := bridgedHostVeth(l); ok {
		return m.plugBridged(ctx, l, host)
	}
	a := l.Attrs()
	if _, err := m.nl.LinkByName(tapName(a.Index)); err == nil {
		// Another VM's Manager wired this link: taking it over would cut that VM off.
		return nil, fmt.Errorf("wiring %s into the VM: it is already wired into another VM (%s exists): a network namespace cannot serve two VMs", a.Name, tapName(a.Index))
	}
	if spare := m.opts.Spare; spare != nil {
		m.opts.Spare = nil
		return m.plugSpare(l, spare)
	}
	tap, tapIndex, err := newTap(m.ns, m.nl, tapName(a.Index), a.MTU)
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	// QEMU gets its own copy of the tap; ours goes in any case, so that on failure the tap (and
	// the filter on it) disappears.
	defer tap.Close()
	addrs, err := listRetrying(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("wiring %s into the VM: listing its addresses: %w", a.Name, err)
	}
	src := sourceOf(a.HardwareAddr, addrs)
	if err := connect(m.nl, a.Index, tapIndex, src); err != nil {
		disconnect(m.nl, a.Index)
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	p := &port{link: a.Index, tap: tapIndex, mac: a.HardwareAddr.String(), nicID: nicID(a.Index), src: src}
	hctx, cancel := context.WithTimeout(ctx, hotplugTimeout)
	defer cancel()
	if err := m.opts.VM.AddNIC(hctx, hypervisor.NIC{ID: p.nicID, MAC: a.HardwareAddr, Tap: tap}); err != nil {
		disconnect(m.nl, a.Index)
		return nil, fmt.Errorf("wiring %s into the VM: %w", a.Name, err)
	}
	return p, nil
}

// guardTaps follows address changes of the plugged links in their taps' anti-spoofing filters.
func (m *Manager) guardTaps(current map[int]netlink.Link) error {
	var errs []error
	for idx, p := range m.plugged {
		l, ok := current[idx]
		if !ok {
			continue
		}
		addrs, err := listRetrying(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the addresses of %s: %w", l.Attrs().Name, err))
			continue
		}
		src := sourceOf(l.Attrs().HardwareAddr, addrs)
		if src.equal(p.src) {
			continue
		}
		if err := m.guardPort(p, src); err != nil {
			errs = append(errs, fmt.Errorf("updating the anti-spoofing filters of %s: %w", l.Attrs().Name, err))
			continue
		}
		p.src = src
	}
	return errors.Join(errs...)
}

// unplug removes the NIC of a link that left the namespace; its tap goes with it.
func (m *Manager) unplug(p *port) error {
	disconnect(m.nl, p.link)
	ctx, cancel := context.WithTimeout(m.ctx, unplugTimeout)
	defer cancel()
	if err := m.opts.VM.RemoveNIC(ctx, p.nicID); err != nil {
		return fmt.Errorf("unplugging the NIC of link %d: %w", p.link, err)
	}
	return nil
}

// configureGuest sends the guest the configuration of the plugged links, unless it has it already.
func (m *Manager) configureGuest(ctx context.Context, current map[int]netlink.Link) error {
	n, err := m.guestNetwork(current)
	if err != nil {
		return err
	}
	if m.sent != nil && reflect.DeepEqual(*m.sent, n) {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, configureTimeout)
	defer cancel()
	if err := m.opts.Agent.ConfigureNetwork(cctx, n); err != nil {
		m.sent = nil // try again on the next change
		return fmt.Errorf("configuring the guest's network: %w", err)
	}
	m.sent = &n
	return nil
}

// guestNetwork reads the addresses and routes of the plugged links.
func (m *Manager) guestNetwork(current map[int]netlink.Link) (agentproto.Network, error) {
	n := agentproto.Network{Interfaces: []agentproto.Interface{}, Routes: []agentproto.Route{}}
	names := map[int]string{}
	for _, idx := range slices.Sorted(maps.Keys(current)) {
		if _, ok := m.plugged[idx]; !ok {
			continue
		}
		l := current[idx]
		addrs, err := listRetrying(func() ([]netlink.Addr, error) { return m.nl.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return n, fmt.Errorf("listing the addresses of %s: %w", l.Attrs().Name, err)
		}
		in := guestInterface(l, addrs)
		in.CardMAC = m.plugged[idx].cardMAC
		n.Interfaces = append(n.Interfaces, in)
		names[idx] = l.Attrs().Name
	}
	routes, err := listRetrying(func() ([]netlink.Route, error) {
		return m.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return n, fmt.Errorf("listing the routes of the container's network namespace: %w", err)
	}
	if r := guestRoutes(routes, names); r != nil {
		n.Routes = r
	}
	return n, nil
}
