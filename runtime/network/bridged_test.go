package network

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestBridgedHostVeth(t *testing.T) {
	veth := func(alias string) netlink.Link {
		return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth1", Alias: alias}}
	}
	tests := []struct {
		link netlink.Link
		host string
		ok   bool
	}{
		{veth("kata-net:knh0123456789ab"), "knh0123456789ab", true},
		{veth(""), "", false},
		{veth("kata-net:eth0"), "", false},
		{veth("kata-net:knh0123456789ab/../x"), "", false},
		{veth("kata-net:knh0123456789abc"), "", false},
		{&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d", Alias: "kata-net:knh0123456789ab"}}, "", false},
	}
	for _, tt := range tests {
		host, ok := bridgedHostVeth(tt.link)
		if host != tt.host || ok != tt.ok {
			t.Errorf("%s %q: (%q, %v), want (%q, %v)", tt.link.Type(), tt.link.Attrs().Alias, host, ok, tt.host, tt.ok)
		}
	}
	if got := bridgedTapName("knh0123456789ab"); got != "kt0123456789ab" || len(got) > 15 {
		t.Errorf("tap name %q", got)
	}
}

// On a bridge the allowed frames are let through (no redirect); elsewhere they are redirected to
// Docker's link. Either way the last filter drops the rest.
func TestAntiSpoofFiltersBridged(t *testing.T) {
	src := sourceOf(net.HardwareAddr{2, 0x42, 10, 0, 0, 2}, nil)
	for _, link := range []int{0, 7} {
		filters, err := antiSpoofFilters(9, link, src, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range filters[:len(filters)-1] {
			u, ok := f.(*netlink.U32)
			if !ok {
				t.Fatalf("allow filter %T", f)
			}
			if redirects := len(u.Actions) == 1; redirects != (link != 0) {
				t.Errorf("link %d: allow filter actions %v", link, u.Actions)
			}
		}
		if _, ok := filters[len(filters)-1].(*netlink.BpfFilter); !ok {
			t.Errorf("link %d: last filter %T, want the drop program", link, filters[len(filters)-1])
		}
	}
}
