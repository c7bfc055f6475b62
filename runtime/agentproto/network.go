package agentproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
)

// Network operations.
const (
	// OpNetwork hands the agent the complete network configuration the
	// guest must have (Request.Network). It is a desired state, not a diff:
	// the host sends it again whenever Docker changes the container's
	// network namespace, and the agent converges to it.
	OpNetwork = "network"
	// OpDNS turns the stream into the DNS relay channel: after the answer
	// line, the agent writes DNSFrames carrying the queries that guest
	// processes sent to 127.0.0.11:53, and the host writes back DNSFrames
	// with the answers of Docker's embedded DNS. See DNSFrame.
	OpDNS = "dns"
)

// DockerDNS is the address of Docker's embedded DNS server on user-defined
// networks: it lives in the container's network namespace on the host, so
// the agent serves it in the guest and relays to the host.
const DockerDNS = "127.0.0.11"

// Network is the guest's network configuration: the container's interfaces
// as Docker configured them in its network namespace, and its routes.
type Network struct {
	Interfaces []Interface `json:"interfaces"`
	Routes     []Route     `json:"routes"`
}

// Interface is one NIC of the guest, found by its MAC address.
type Interface struct {
	Name string `json:"name"` // the name Docker gave the veth (eth0, ...)
	MAC  string `json:"mac"`  // the veth's MAC, which the NIC was hot-plugged with
	MTU  int    `json:"mtu"`
	// Addresses in CIDR notation ("172.18.0.2/16", "fd00::2/64"). IPv6
	// link-local addresses are left out: the guest derives its own from the
	// same MAC.
	Addresses []string `json:"addresses,omitempty"`
	// CardMAC, if set, is the MAC a card plugged before the container existed has (a pooled
	// VM's spare card): the agent gives that card MAC instead of waiting for one with MAC.
	CardMAC string `json:"cardMac,omitempty"`
}

// Route scopes, as in `ip route ... scope`.
const (
	ScopeUniverse = "universe"
	ScopeLink     = "link"
	ScopeHost     = "host"
)

// Route is one route of the main table.
type Route struct {
	Dest    string `json:"dest,omitempty"`    // CIDR; "" is the default route (of Family)
	Gateway string `json:"gateway,omitempty"` // "" for a directly connected route
	Device  string `json:"device"`            // Interface.Name
	Scope   string `json:"scope,omitempty"`   // ScopeUniverse ("" too), ScopeLink or ScopeHost
	Source  string `json:"source,omitempty"`  // preferred source address
	Metric  int    `json:"metric,omitempty"`
	Family  int    `json:"family,omitempty"` // 4 or 6; needed for a default route, which has no Dest
}

// ifNamePattern with a length of at most 15 (IFNAMSIZ) is an interface name (see idPattern for
// why the length is apart).
var ifNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate rejects a configuration the agent must not apply: names that are
// not interface names, malformed MACs, addresses or routes, routes through
// devices that are not in the list.
func (n Network) Validate() error {
	names := map[string]bool{}
	macs := map[string]bool{}
	for _, in := range n.Interfaces {
		if len(in.Name) > 15 || !ifNamePattern.MatchString(in.Name) || in.Name == "lo" {
			return fmt.Errorf("interface name %q is invalid: use 1-15 characters from [A-Za-z0-9_.-], not lo", in.Name)
		}
		mac, err := net.ParseMAC(in.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("interface %s: MAC %q is not an Ethernet address", in.Name, in.MAC)
		}
		if in.CardMAC != "" {
			if card, err := net.ParseMAC(in.CardMAC); err != nil || len(card) != 6 || card[0]&1 != 0 {
				return fmt.Errorf("interface %s: card MAC %q is not a unicast Ethernet address", in.Name, in.CardMAC)
			}
		}
		if names[in.Name] || macs[mac.String()] {
			return fmt.Errorf("interface %s (%s) is listed twice", in.Name, in.MAC)
		}
		names[in.Name], macs[mac.String()] = true, true
		if in.MTU < 68 || in.MTU > 65535 {
			return fmt.Errorf("interface %s: MTU %d is out of range (68-65535)", in.Name, in.MTU)
		}
		for _, a := range in.Addresses {
			if _, _, err := net.ParseCIDR(a); err != nil {
				return fmt.Errorf("interface %s: address %q: %w", in.Name, a, err)
			}
		}
	}
	for _, r := range n.Routes {
		if err := r.validate(names); err != nil {
			return err
		}
	}
	return nil
}

func (r Route) validate(devices map[string]bool) error {
	if !devices[r.Device] {
		return fmt.Errorf("route %s: device %q is not one of the interfaces", r, r.Device)
	}
	if r.Dest != "" {
		if _, _, err := net.ParseCIDR(r.Dest); err != nil {
			return fmt.Errorf("route %s: destination: %w", r, err)
		}
	} else if r.Family != 4 && r.Family != 6 {
		return fmt.Errorf("route %s: a default route needs family 4 or 6", r)
	}
	for _, ip := range []string{r.Gateway, r.Source} {
		if ip != "" && net.ParseIP(ip) == nil {
			return fmt.Errorf("route %s: %q is not an IP address", r, ip)
		}
	}
	switch r.Scope {
	case "", ScopeUniverse, ScopeLink, ScopeHost:
	default:
		return fmt.Errorf("route %s: scope %q is not universe, link or host", r, r.Scope)
	}
	if r.Metric < 0 {
		return fmt.Errorf("route %s: negative metric", r)
	}
	return nil
}

func (r Route) String() string {
	dest := r.Dest
	if dest == "" {
		dest = "default"
	}
	s := dest
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	return s + " dev " + r.Device
}

// ConfigureNetwork makes the guest's network match n: NICs (found by MAC,
// waiting for hot-plugged ones to appear) renamed, sized, addressed and up,
// routes replaced; NICs not in n are taken down. The loopback interface is
// always brought up, so an empty n is right for --network none.
func (c *Client) ConfigureNetwork(ctx context.Context, n Network) error {
	if err := n.Validate(); err != nil {
		return fmt.Errorf("guest network configuration: %w", err)
	}
	_, err := c.call(ctx, Request{Op: OpNetwork, Network: &n})
	return err
}

// DNS opens the DNS relay stream (see OpDNS). The agent starts listening on
// 127.0.0.11:53 (UDP and TCP) before it answers, so queries sent after DNS
// returns reach the stream. A later DNS call replaces the stream.
func (c *Client) DNS(ctx context.Context) (io.ReadWriteCloser, error) {
	st, br, err := c.exchange(ctx, Request{Op: OpDNS})
	if err != nil {
		return nil, err
	}
	return &dnsStream{callStream: st, r: br}, nil
}

// dnsStream reads through the reader that consumed the answer line.
type dnsStream struct {
	*callStream
	r *bufio.Reader
}

func (s *dnsStream) Read(p []byte) (int, error) { return s.r.Read(p) }

// DNSFrame is one DNS message on the relay stream, in either direction. On
// the wire: a 4-byte big-endian ID, one flags byte (bit 0: the query came
// over TCP), a 2-byte big-endian length and the DNS message as it is sent
// over UDP (no TCP length prefix). The ID is the agent's, not the DNS
// message's: two guest processes may use the same DNS ID at once. An answer
// carries the ID of its query; a zero-length answer means the host could
// not get one (the agent then drops the query and the client retries).
type DNSFrame struct {
	ID  uint32
	TCP bool
	Msg []byte
}

const (
	dnsFrameHeader = 7
	dnsFlagTCP     = 1
	// MaxDNSMessage is the largest DNS message (TCP's 16-bit length).
	MaxDNSMessage = 65535
)

// ErrDNSFrameTooLarge is returned for a message over MaxDNSMessage bytes.
var ErrDNSFrameTooLarge = errors.New("DNS message exceeds 65535 bytes")

// WriteDNSFrame writes f in one Write call, so that concurrent writers
// serialized by a mutex never interleave partial frames.
func WriteDNSFrame(w io.Writer, f DNSFrame) error {
	if len(f.Msg) > MaxDNSMessage {
		return ErrDNSFrameTooLarge
	}
	b := make([]byte, dnsFrameHeader+len(f.Msg))
	binary.BigEndian.PutUint32(b[0:4], f.ID)
	if f.TCP {
		b[4] = dnsFlagTCP
	}
	binary.BigEndian.PutUint16(b[5:7], uint16(len(f.Msg)))
	copy(b[dnsFrameHeader:], f.Msg)
	_, err := w.Write(b)
	return err
}

// ReadDNSFrame reads one frame. io.EOF means the stream ended between
// frames; io.ErrUnexpectedEOF means it ended inside one.
func ReadDNSFrame(r io.Reader) (DNSFrame, error) {
	var hdr [dnsFrameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return DNSFrame{}, err
	}
	if hdr[4]&^dnsFlagTCP != 0 {
		return DNSFrame{}, fmt.Errorf("DNS relay frame has unknown flags %#x: host and agent versions differ", hdr[4])
	}
	f := DNSFrame{ID: binary.BigEndian.Uint32(hdr[0:4]), TCP: hdr[4]&dnsFlagTCP != 0}
	f.Msg = make([]byte, binary.BigEndian.Uint16(hdr[5:7]))
	if _, err := io.ReadFull(r, f.Msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return DNSFrame{}, err
	}
	return f, nil
}
