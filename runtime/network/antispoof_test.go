package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	nicMAC   = mustMAC("02:42:ac:11:00:02")
	otherMAC = mustMAC("02:42:ac:11:00:03")
	nicIPv4  = net.ParseIP("172.17.0.2").To4()
	otherV4  = net.ParseIP("172.17.0.3").To4()
	nicIPv6  = net.ParseIP("fd00::2")
	otherV6  = net.ParseIP("fd00::3")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Frame builders: Ethernet header, then the network header and a marker payload.
func ether(src net.HardwareAddr, proto uint16, payload []byte) []byte {
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...)
	f = binary.BigEndian.AppendUint16(f, proto)
	return append(f, payload...)
}

func ipv4Frame(mac net.HardwareAddr, src, dst net.IP, marker string) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+8+len(marker)))
	h[8], h[9] = 64, unix.IPPROTO_UDP
	copy(h[12:], src.To4())
	copy(h[16:], dst.To4())
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 4000)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(marker)))
	return ether(mac, unix.ETH_P_IP, append(append(h, udp...), marker...))
}

func arpFrame(mac, senderMAC net.HardwareAddr, sender, target net.IP, marker string) []byte {
	a := []byte{0, 1, 8, 0, 6, 4, 0, 2} // Ethernet, IPv4, reply
	a = append(a, senderMAC...)
	a = append(a, sender.To4()...)
	a = append(a, 0, 0, 0, 0, 0, 0)
	a = append(a, target.To4()...)
	return ether(mac, unix.ETH_P_ARP, append(a, marker...))
}

func ipv6Frame(mac net.HardwareAddr, src net.IP, next byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = next, 255
	copy(h[8:], src.To16())
	copy(h[24:], net.ParseIP("ff02::1").To16())
	return ether(mac, unix.ETH_P_IPV6, append(h, payload...))
}

func icmp6(typ byte, target net.IP) []byte {
	m := []byte{typ, 0, 0, 0, 0x20, 0, 0, 0}
	if target != nil {
		m = append(m, target.To16()...)
	}
	return m
}

// u32Allows evaluates the rules on frame as the kernel's u32 classifier would on the tap's ingress
// (offsets from the network header, after the 14-byte Ethernet header).
func u32Allows(rules []rule, frame []byte) bool {
	proto := binary.BigEndian.Uint16(frame[12:14])
	for _, r := range rules {
		if r.protocol != proto {
			continue
		}
		match := true
		for _, k := range r.keys {
			at := 14 + int(k.Off)
			var w [4]byte
			if at >= 0 && at < len(frame) {
				copy(w[:], frame[at:])
			}
			if binary.BigEndian.Uint32(w[:])&k.Mask != k.Val {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func TestAllowRules(t *testing.T) {
	a4, _ := netlink.ParseAddr("172.17.0.2/16")
	a6, _ := netlink.ParseAddr("fd00::2/64")
	src := sourceOf(nicMAC, []netlink.Addr{*a4, *a6})
	ll := linkLocal(nicMAC)
	if ll.String() != "fe80::42:acff:fe11:2" {
		t.Fatalf("link-local of %s: %s", nicMAC, ll)
	}
	rules := allowRules(src)
	tests := []struct {
		name  string
		frame []byte
		allow bool
	}{
		{"IPv4 from the NIC", ipv4Frame(nicMAC, nicIPv4, otherV4, "x"), true},
		{"IPv4 with a forged source MAC", ipv4Frame(otherMAC, nicIPv4, otherV4, "x"), false},
		{"IPv4 with a forged source address", ipv4Frame(nicMAC, otherV4, otherV4, "x"), false},
		{"IPv4 from 0.0.0.0", ipv4Frame(nicMAC, net.IPv4zero, otherV4, "x"), false},
		{"ARP from the NIC", arpFrame(nicMAC, nicMAC, nicIPv4, otherV4, ""), true},
		{"ARP probe", arpFrame(nicMAC, nicMAC, net.IPv4zero, otherV4, ""), true},
		{"ARP claiming another address", arpFrame(nicMAC, nicMAC, otherV4, otherV4, ""), false},
		{"ARP with a forged sender MAC", arpFrame(nicMAC, otherMAC, nicIPv4, otherV4, ""), false},
		{"ARP with a forged source MAC", arpFrame(otherMAC, otherMAC, otherV4, otherV4, ""), false},
		{"IPv6 UDP from the address", ipv6Frame(nicMAC, nicIPv6, unix.IPPROTO_UDP, []byte("x")), true},
		{"IPv6 TCP from the link-local", ipv6Frame(nicMAC, ll, unix.IPPROTO_TCP, []byte("x")), true},
		{"IPv6 from another address", ipv6Frame(nicMAC, otherV6, unix.IPPROTO_UDP, []byte("x")), false},
		{"IPv6 with a forged source MAC", ipv6Frame(otherMAC, nicIPv6, unix.IPPROTO_UDP, []byte("x")), false},
		{"ICMPv6 echo", ipv6Frame(nicMAC, nicIPv6, unix.IPPROTO_ICMPV6, icmp6(128, nil)), true},
		{"neighbour solicitation", ipv6Frame(nicMAC, ll, unix.IPPROTO_ICMPV6, icmp6(135, otherV6)), true},
		{"neighbour advertisement of its own address", ipv6Frame(nicMAC, ll, unix.IPPROTO_ICMPV6, icmp6(136, nicIPv6)), true},
		{"neighbour advertisement of another address", ipv6Frame(nicMAC, nicIPv6, unix.IPPROTO_ICMPV6, icmp6(136, otherV6)), false},
		{"router advertisement", ipv6Frame(nicMAC, ll, unix.IPPROTO_ICMPV6, icmp6(134, nil)), false},
		{"redirect", ipv6Frame(nicMAC, ll, unix.IPPROTO_ICMPV6, icmp6(137, otherV6)), false},
		{"DAD solicitation from ::", ipv6Frame(nicMAC, net.IPv6unspecified, unix.IPPROTO_ICMPV6, icmp6(135, nicIPv6)), true},
		{"UDP from ::", ipv6Frame(nicMAC, net.IPv6unspecified, unix.IPPROTO_UDP, []byte("x")), false},
		{"advertisement from ::", ipv6Frame(nicMAC, net.IPv6unspecified, unix.IPPROTO_ICMPV6, icmp6(136, otherV6)), false},
		{"VLAN tagged", ether(nicMAC, 0x8100, []byte{0, 1, 8, 0}), false},
		{"LLDP", ether(nicMAC, 0x88cc, []byte("x")), false},
	}
	for _, tt := range tests {
		if got := u32Allows(rules, tt.frame); got != tt.allow {
			t.Errorf("%s: allowed %v, want %v", tt.name, got, tt.allow)
		}
	}
}

func TestByteCover(t *testing.T) {
	for _, excluded := range [][]byte{{58}, {134, 136, 137}, {0}, {255}, {}} {
		cover := byteCover(excluded...)
		for v := range 256 {
			n := 0
			for _, c := range cover {
				if uint32(v)&c.mask == c.val {
					n++
				}
			}
			want := 1
			if bytes.IndexByte(excluded, byte(v)) >= 0 {
				want = 0
			}
			if n != want {
				t.Errorf("excluding %v: value %d matched %d times, want %d", excluded, v, n, want)
			}
		}
	}
}

func TestBytesAt(t *testing.T) {
	tests := []struct {
		off  int32
		b    []byte
		want []netlink.TcU32Key
	}{
		{12, []byte{1, 2, 3, 4}, []netlink.TcU32Key{{Off: 12, Mask: 0xffffffff, Val: 0x01020304}}},
		{8, []byte{1, 2, 3, 4, 5, 6}, []netlink.TcU32Key{{Off: 8, Mask: 0xffffffff, Val: 0x01020304}, {Off: 12, Mask: 0xffff0000, Val: 0x05060000}}},
		{14, []byte{1, 2, 3, 4}, []netlink.TcU32Key{{Off: 12, Mask: 0x0000ffff, Val: 0x0102}, {Off: 16, Mask: 0xffff0000, Val: 0x03040000}}},
	}
	for _, tt := range tests {
		got := bytesAt(tt.off, tt.b)
		if len(got) != len(tt.want) {
			t.Errorf("bytesAt(%d, %v) = %+v, want %+v", tt.off, tt.b, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("bytesAt(%d, %v) = %+v, want %+v", tt.off, tt.b, got, tt.want)
			}
		}
	}
}

// TestTapDropsForgedFrames writes frames into a real tap, as the guest's NIC would, and watches
// Docker's side of the veth: the well-formed ones arrive, the forged ones do not.
func TestTapDropsForgedFrames(t *testing.T) {
	requireRoot(t)
	ns, h, _ := newNetNS(t)
	link := addVeth(t, h, ns, "eth0", nicMAC.String(), "172.17.0.2/16", "")
	peer, err := h.LinkByName("peth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	tap, tapIndex, err := newTap(ns, h, "ktap", 1450)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	if err := connect(h, link.Attrs().Index, tapIndex, sourceOf(nicMAC, addrs)); err != nil {
		t.Fatal(err)
	}

	// Docker's end of the veth, as the bridge would see it.
	var sock int
	err = inNamespace(ns, func() error {
		var err error
		sock, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(sock, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: peer.Attrs().Index})
	})
	if err != nil {
		t.Fatalf("packet socket on the peer: %v", err)
	}
	defer unix.Close(sock)
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	drain := func(until time.Time) {
		buf := make([]byte, 2048)
		for time.Now().Before(until) {
			n, _, err := unix.Recvfrom(sock, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				t.Fatalf("reading the peer: %v", err)
			}
			if i := bytes.Index(buf[:n], []byte("MARK-")); i >= 0 {
				seen[string(buf[i:min(n, i+8)])] = true
			}
		}
	}
	frames := []struct {
		marker string
		frame  func(m string) []byte
		arrive bool
	}{
		{"MARK-ok1", func(m string) []byte { return ipv4Frame(nicMAC, nicIPv4, otherV4, m) }, true},
		{"MARK-mac", func(m string) []byte { return ipv4Frame(otherMAC, nicIPv4, otherV4, m) }, false},
		{"MARK-ip4", func(m string) []byte { return ipv4Frame(nicMAC, otherV4, otherV4, m) }, false},
		{"MARK-ok2", func(m string) []byte { return arpFrame(nicMAC, nicMAC, nicIPv4, otherV4, m) }, true},
		{"MARK-arp", func(m string) []byte { return arpFrame(nicMAC, nicMAC, otherV4, otherV4, m) }, false},
		{"MARK-ok3", func(m string) []byte {
			return ipv6Frame(nicMAC, linkLocal(nicMAC), unix.IPPROTO_UDP, append(make([]byte, 8), m...))
		}, true},
		{"MARK-ip6", func(m string) []byte {
			return ipv6Frame(nicMAC, otherV6, unix.IPPROTO_UDP, append(make([]byte, 8), m...))
		}, false},
	}
	for _, f := range frames {
		// The tap carries a virtio-net header (10 bytes, all zero: no offloads) before each frame.
		if _, err := tap.Write(append(make([]byte, 10), f.frame(f.marker)...)); err != nil {
			t.Fatalf("writing %s into the tap: %v", f.marker, err)
		}
	}
	drain(time.Now().Add(time.Second))
	for _, f := range frames {
		if seen[f.marker] != f.arrive {
			t.Errorf("frame %s: arrived %v, want %v", f.marker, seen[f.marker], f.arrive)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
