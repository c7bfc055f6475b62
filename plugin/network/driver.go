package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"

	dnet "github.com/docker/go-plugins-helpers/network"
)

// Links makes and removes the driver's links in the engine's network namespace (links.go).
type Links interface {
	EnsureBridge(name, gatewayCIDR string, mtu int) error
	DeleteBridge(name string) error
	// EnsureVeth makes the pair host<->peer unless host exists; host becomes a port of bridge.
	EnsureVeth(host, peer, bridge, mac string, mtu int) error
	DeleteVeth(host string) error
	// Names lists the links of this driver whose names start with prefix.
	Names(prefix string) ([]string, error)
}

// Firewall lets a network's traffic through the engine's FORWARD policy and masquerades what
// leaves it (firewall.go).
type Firewall interface {
	Allow(bridge, subnet string) error
	Revoke(bridge, subnet string) error
}

// Config configures New.
type Config struct {
	StateDir string
	Links    Links
	Firewall Firewall
	Logf     func(format string, args ...any)
}

// Driver is the kata-net network driver.
type Driver struct {
	cfg  Config
	path string
	mu   sync.Mutex
	st   *state
}

// Link name prefixes: Linux allows 15 characters, so 3 + 12 of Docker's ID.
const (
	bridgePrefix = "kn-"
	hostPrefix   = "knh"
	peerPrefix   = "knc"
	idChars      = 12
)

// dockerID is what Docker gives as network and endpoint IDs; they become link names.
var dockerID = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// New loads the state and reconciles the host with it.
func New(cfg Config) (*Driver, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("the network driver's state directory: %w", err)
	}
	path := filepath.Join(cfg.StateDir, "networks.json")
	st, err := loadState(path)
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, path: path, st: st}
	return d, d.reconcile()
}

// reconcile makes the bridges and rules of known networks (gone after a reboot) and removes
// links of this driver that no record names (left by a crash).
func (d *Driver) reconcile() error {
	var errs []error
	bridges := map[string]bool{}
	for _, n := range d.st.Networks {
		bridges[n.Bridge] = true
		if err := d.cfg.Links.EnsureBridge(n.Bridge, n.Gateway, n.MTU); err != nil {
			errs = append(errs, fmt.Errorf("network %.12s: %w", n.ID, err))
			continue
		}
		errs = append(errs, d.cfg.Firewall.Allow(n.Bridge, n.Subnet))
	}
	hosts := map[string]bool{}
	for _, e := range d.st.Endpoints {
		hosts[e.HostVeth] = true
	}
	for prefix, known := range map[string]map[string]bool{bridgePrefix: bridges, hostPrefix: hosts} {
		names, err := d.cfg.Links.Names(prefix)
		errs = append(errs, err)
		for _, name := range names {
			if known[name] {
				continue
			}
			d.cfg.Logf("removing %s: no network or endpoint of this driver has it", name)
			if prefix == bridgePrefix {
				errs = append(errs, d.cfg.Links.DeleteBridge(name))
			} else {
				errs = append(errs, d.cfg.Links.DeleteVeth(name))
			}
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) GetCapabilities() (*dnet.CapabilitiesResponse, error) {
	return &dnet.CapabilitiesResponse{Scope: dnet.LocalScope, ConnectivityScope: dnet.LocalScope}, nil
}

// CreateNetwork makes the network's bridge with the gateway address and lets its traffic through.
func (d *Driver) CreateNetwork(r *dnet.CreateNetworkRequest) error {
	if !dockerID.MatchString(r.NetworkID) {
		return fmt.Errorf("network id %q is not one of Docker's", r.NetworkID)
	}
	if len(r.IPv6Data) > 0 {
		return errors.New("kata-net does not do IPv6 yet: create the network without --ipv6")
	}
	if len(r.IPv4Data) != 1 || r.IPv4Data[0] == nil {
		return fmt.Errorf("kata-net needs exactly one IPv4 subnet, got %d: give one --subnet or none", len(r.IPv4Data))
	}
	mtu, err := parseOptions(r.Options)
	if err != nil {
		return err
	}
	gw, subnet, err := gatewayOf(r.IPv4Data[0])
	if err != nil {
		return err
	}
	n := &netRecord{ID: r.NetworkID, Bridge: bridgePrefix + r.NetworkID[:idChars], Gateway: gw, Subnet: subnet, MTU: mtu}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.st.Networks[n.ID]; ok {
		return fmt.Errorf("network %.12s exists", n.ID)
	}
	if err := d.cfg.Links.EnsureBridge(n.Bridge, n.Gateway, n.MTU); err != nil {
		d.cfg.Links.DeleteBridge(n.Bridge)
		return err
	}
	if err := d.cfg.Firewall.Allow(n.Bridge, n.Subnet); err != nil {
		d.cfg.Firewall.Revoke(n.Bridge, n.Subnet)
		d.cfg.Links.DeleteBridge(n.Bridge)
		return err
	}
	d.st.Networks[n.ID] = n
	if err := d.st.save(d.path); err != nil {
		delete(d.st.Networks, n.ID)
		d.cfg.Firewall.Revoke(n.Bridge, n.Subnet)
		d.cfg.Links.DeleteBridge(n.Bridge)
		return err
	}
	d.cfg.Logf("network %.12s: bridge %s, gateway %s", n.ID, n.Bridge, n.Gateway)
	return nil
}

// parseOptions reads the -o options of docker network create: mtu only.
func parseOptions(opts map[string]interface{}) (int, error) {
	generic, _ := opts["com.docker.network.generic"].(map[string]interface{})
	mtu := 0
	for k, v := range generic {
		s := fmt.Sprint(v)
		switch k {
		case "mtu":
			n, err := strconv.Atoi(s)
			if err != nil || n < 576 || n > 65535 {
				return 0, fmt.Errorf("option mtu=%q: want a number from 576 to 65535", s)
			}
			mtu = n
		default:
			return 0, fmt.Errorf("option %q is not known to kata-net: it takes mtu", k)
		}
	}
	return mtu, nil
}

// gatewayOf returns the gateway with the pool's prefix length, and the pool.
func gatewayOf(ipam *dnet.IPAMData) (gateway, subnet string, err error) {
	_, pool, err := net.ParseCIDR(ipam.Pool)
	if err != nil || pool.IP.To4() == nil {
		return "", "", fmt.Errorf("IPv4 pool %q is not an IPv4 subnet", ipam.Pool)
	}
	gw, _, err := net.ParseCIDR(ipam.Gateway)
	if err != nil || !pool.Contains(gw) {
		return "", "", fmt.Errorf("gateway %q is not an address of %s", ipam.Gateway, pool)
	}
	ones, _ := pool.Mask.Size()
	return gw.String() + "/" + strconv.Itoa(ones), pool.String(), nil
}

// DeleteNetwork removes the bridge and its rules.
func (d *Driver) DeleteNetwork(r *dnet.DeleteNetworkRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.st.Networks[r.NetworkID]
	if !ok {
		return nil
	}
	if err := errors.Join(d.cfg.Firewall.Revoke(n.Bridge, n.Subnet), d.cfg.Links.DeleteBridge(n.Bridge)); err != nil {
		return err
	}
	delete(d.st.Networks, n.ID)
	return d.st.save(d.path)
}

func (d *Driver) AllocateNetwork(*dnet.AllocateNetworkRequest) (*dnet.AllocateNetworkResponse, error) {
	return nil, errors.New("kata-net is a local driver: it has no swarm scope")
}

func (d *Driver) FreeNetwork(*dnet.FreeNetworkRequest) error { return nil }

// CreateEndpoint makes the endpoint's veth pair on the network's bridge. The MAC is derived from
// the address, as Docker's bridge driver does, unless Docker gave one.
func (d *Driver) CreateEndpoint(r *dnet.CreateEndpointRequest) (*dnet.CreateEndpointResponse, error) {
	if !dockerID.MatchString(r.EndpointID) {
		return nil, fmt.Errorf("endpoint id %q is not one of Docker's", r.EndpointID)
	}
	if r.Interface == nil || r.Interface.Address == "" {
		return nil, errors.New("the endpoint has no IPv4 address: kata-net takes its addresses from Docker's IPAM")
	}
	if r.Interface.AddressIPv6 != "" {
		return nil, errors.New("kata-net does not do IPv6 yet")
	}
	ip, _, err := net.ParseCIDR(r.Interface.Address)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("endpoint address %q is not an IPv4 address", r.Interface.Address)
	}
	var resp dnet.CreateEndpointResponse
	mac := r.Interface.MacAddress
	if mac == "" {
		mac = macOf(ip.To4())
		resp.Interface = &dnet.EndpointInterface{MacAddress: mac}
	} else if _, err := net.ParseMAC(mac); err != nil {
		return nil, fmt.Errorf("MAC address %q: %w", mac, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.st.Networks[r.NetworkID]
	if !ok {
		return nil, fmt.Errorf("network %.12s is not a kata-net network", r.NetworkID)
	}
	e := &endpointRecord{ID: r.EndpointID, NetworkID: n.ID, Address: r.Interface.Address, MAC: mac,
		HostVeth: hostPrefix + r.EndpointID[:idChars], PeerVeth: peerPrefix + r.EndpointID[:idChars]}
	if err := d.cfg.Links.EnsureVeth(e.HostVeth, e.PeerVeth, n.Bridge, e.MAC, n.MTU); err != nil {
		d.cfg.Links.DeleteVeth(e.HostVeth)
		return nil, err
	}
	d.st.Endpoints[e.ID] = e
	if err := d.st.save(d.path); err != nil {
		delete(d.st.Endpoints, e.ID)
		d.cfg.Links.DeleteVeth(e.HostVeth)
		return nil, err
	}
	return &resp, nil
}

// macOf is 02:42 followed by the IPv4 address, Docker's own convention.
func macOf(ip net.IP) string {
	return net.HardwareAddr{0x02, 0x42, ip[0], ip[1], ip[2], ip[3]}.String()
}

// DeleteEndpoint removes the veth pair (both ends, wherever the peer is).
func (d *Driver) DeleteEndpoint(r *dnet.DeleteEndpointRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.st.Endpoints[r.EndpointID]
	if !ok {
		return nil
	}
	if err := d.cfg.Links.DeleteVeth(e.HostVeth); err != nil {
		return err
	}
	delete(d.st.Endpoints, e.ID)
	return d.st.save(d.path)
}

func (d *Driver) EndpointInfo(r *dnet.InfoRequest) (*dnet.InfoResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.st.Endpoints[r.EndpointID]
	if !ok {
		return nil, fmt.Errorf("endpoint %.12s is not known to kata-net", r.EndpointID)
	}
	return &dnet.InfoResponse{Value: map[string]string{"hostVeth": e.HostVeth, "mac": e.MAC, "address": e.Address}}, nil
}

// Join hands Docker the veth's peer to move into the container. A container that stopped took
// its peer (and so the pair) with its namespace: a restart makes the pair again.
func (d *Driver) Join(r *dnet.JoinRequest) (*dnet.JoinResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.st.Endpoints[r.EndpointID]
	if !ok {
		return nil, fmt.Errorf("endpoint %.12s is not known to kata-net", r.EndpointID)
	}
	n, ok := d.st.Networks[e.NetworkID]
	if !ok {
		return nil, fmt.Errorf("the network of endpoint %.12s is gone", r.EndpointID)
	}
	if err := d.cfg.Links.EnsureVeth(e.HostVeth, e.PeerVeth, n.Bridge, e.MAC, n.MTU); err != nil {
		return nil, err
	}
	gw, _, _ := net.ParseCIDR(n.Gateway)
	return &dnet.JoinResponse{InterfaceName: dnet.InterfaceName{SrcName: e.PeerVeth, DstPrefix: "eth"}, Gateway: gw.String()}, nil
}

func (d *Driver) Leave(*dnet.LeaveRequest) error { return nil }

func (d *Driver) DiscoverNew(*dnet.DiscoveryNotification) error    { return nil }
func (d *Driver) DiscoverDelete(*dnet.DiscoveryNotification) error { return nil }

// ProgramExternalConnectivity refuses published ports, which kata-net does not map yet.
func (d *Driver) ProgramExternalConnectivity(r *dnet.ProgramExternalConnectivityRequest) error {
	if pm, ok := r.Options["com.docker.network.portmap"].([]interface{}); ok && len(pm) > 0 {
		return errors.New("kata-net does not publish ports yet: publish them on the default bridge or a bridge network")
	}
	return nil
}

func (d *Driver) RevokeExternalConnectivity(*dnet.RevokeExternalConnectivityRequest) error {
	return nil
}
