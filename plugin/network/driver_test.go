package network

import (
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	dnet "github.com/docker/go-plugins-helpers/network"
)

// fakeHost records links and rules as the kernel and iptables would hold them.
type fakeHost struct {
	bridges map[string]string // name -> gateway
	veths   map[string]string // host -> bridge
	rules   map[string]bool   // bridge -> allowed
	failFW  bool
}

func newFakeHost() *fakeHost {
	return &fakeHost{bridges: map[string]string{}, veths: map[string]string{}, rules: map[string]bool{}}
}

func (h *fakeHost) EnsureBridge(name, gw string, mtu int) error { h.bridges[name] = gw; return nil }
func (h *fakeHost) DeleteBridge(name string) error              { delete(h.bridges, name); return nil }
func (h *fakeHost) EnsureVeth(host, peer, bridge, mac string, mtu int) error {
	if _, ok := h.bridges[bridge]; !ok {
		return errors.New("no bridge")
	}
	h.veths[host] = bridge
	return nil
}
func (h *fakeHost) DeleteVeth(host string) error { delete(h.veths, host); return nil }
func (h *fakeHost) Names(prefix string) ([]string, error) {
	var out []string
	for n := range h.bridges {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	for n := range h.veths {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
func (h *fakeHost) Allow(bridge, subnet string) error {
	if h.failFW {
		return errors.New("iptables: failed")
	}
	h.rules[bridge] = true
	return nil
}
func (h *fakeHost) Revoke(bridge, subnet string) error { delete(h.rules, bridge); return nil }

const (
	netID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	epID  = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func newDriver(t *testing.T, dir string, h *fakeHost) *Driver {
	t.Helper()
	d, err := New(Config{StateDir: filepath.Join(dir, "state"), Links: h, Firewall: h})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func createReq(opts map[string]interface{}) *dnet.CreateNetworkRequest {
	return &dnet.CreateNetworkRequest{NetworkID: netID, Options: map[string]interface{}{"com.docker.network.generic": opts},
		IPv4Data: []*dnet.IPAMData{{Pool: "172.30.0.0/16", Gateway: "172.30.0.1/16"}}}
}

func TestNetworkLifecycle(t *testing.T) {
	dir, h := t.TempDir(), newFakeHost()
	d := newDriver(t, dir, h)
	if err := d.CreateNetwork(createReq(map[string]interface{}{"mtu": "1400"})); err != nil {
		t.Fatal(err)
	}
	if h.bridges["kn-0123456789ab"] != "172.30.0.1/16" || !h.rules["kn-0123456789ab"] {
		t.Fatalf("bridge/rules: %v %v", h.bridges, h.rules)
	}
	resp, err := d.CreateEndpoint(&dnet.CreateEndpointRequest{NetworkID: netID, EndpointID: epID, Interface: &dnet.EndpointInterface{Address: "172.30.0.2/16"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Interface == nil || resp.Interface.MacAddress != "02:42:ac:1e:00:02" {
		t.Errorf("MAC = %+v, want Docker's 02:42 + address", resp.Interface)
	}
	join, err := d.Join(&dnet.JoinRequest{NetworkID: netID, EndpointID: epID, SandboxKey: "/var/run/docker/netns/x"})
	if err != nil {
		t.Fatal(err)
	}
	if join.InterfaceName.SrcName != "kncfedcba987654" || join.InterfaceName.DstPrefix != "eth" || join.Gateway != "172.30.0.1" {
		t.Errorf("join = %+v", join)
	}

	// A restart of the driver keeps everything, and makes the bridge again after a reboot.
	delete(h.bridges, "kn-0123456789ab")
	d = newDriver(t, dir, h)
	if _, ok := h.bridges["kn-0123456789ab"]; !ok {
		t.Error("the bridge was not made again at start")
	}
	if _, err := d.EndpointInfo(&dnet.InfoRequest{NetworkID: netID, EndpointID: epID}); err != nil {
		t.Errorf("endpoint lost across a restart: %v", err)
	}

	if err := d.DeleteEndpoint(&dnet.DeleteEndpointRequest{NetworkID: netID, EndpointID: epID}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(&dnet.DeleteNetworkRequest{NetworkID: netID}); err != nil {
		t.Fatal(err)
	}
	if len(h.bridges)+len(h.veths)+len(h.rules) != 0 {
		t.Errorf("left behind: %v %v %v", h.bridges, h.veths, h.rules)
	}
}

func TestNetworkRefusals(t *testing.T) {
	tests := []struct {
		name string
		req  *dnet.CreateNetworkRequest
		fw   bool
		want string
	}{
		{"unknown option", createReq(map[string]interface{}{"parent": "eth0"}), false, `option "parent" is not known`},
		{"bad mtu", createReq(map[string]interface{}{"mtu": "9"}), false, "576 to 65535"},
		{"ipv6", func() *dnet.CreateNetworkRequest {
			r := createReq(nil)
			r.IPv6Data = []*dnet.IPAMData{{Pool: "fd00::/64"}}
			return r
		}(), false, "IPv6"},
		{"gateway outside", func() *dnet.CreateNetworkRequest {
			r := createReq(nil)
			r.IPv4Data[0].Gateway = "10.0.0.1/8"
			return r
		}(), false, "not an address of"},
		{"bad id", func() *dnet.CreateNetworkRequest { r := createReq(nil); r.NetworkID = "../x"; return r }(), false, "not one of Docker's"},
		{"firewall fails", createReq(nil), true, "iptables"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, h := t.TempDir(), newFakeHost()
			h.failFW = tt.fw
			d := newDriver(t, dir, h)
			err := d.CreateNetwork(tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if len(h.bridges)+len(h.rules) != 0 || len(d.st.Networks) != 0 {
				t.Errorf("a refused network left %v %v %v", h.bridges, h.rules, d.st.Networks)
			}
		})
	}
}

func TestReconcileRemovesOrphans(t *testing.T) {
	dir, h := t.TempDir(), newFakeHost()
	h.bridges["kn-deadbeef0000"] = "10.9.0.1/16"
	h.veths["knhdeadbeef0000"] = "kn-deadbeef0000"
	h.bridges["docker0"] = "172.17.0.1/16"
	newDriver(t, dir, h)
	names, _ := h.Names("")
	if !slices.Equal(names, []string{"docker0"}) {
		t.Errorf("after start: %v, want only docker0", names)
	}
}

func TestPortsRefused(t *testing.T) {
	d := newDriver(t, t.TempDir(), newFakeHost())
	err := d.ProgramExternalConnectivity(&dnet.ProgramExternalConnectivityRequest{Options: map[string]interface{}{
		"com.docker.network.portmap": []interface{}{map[string]interface{}{"Proto": 6, "Port": 80}}}})
	if err == nil || !strings.Contains(err.Error(), "publish") {
		t.Errorf("published ports: %v", err)
	}
	if err := d.ProgramExternalConnectivity(&dnet.ProgramExternalConnectivityRequest{}); err != nil {
		t.Error(err)
	}
}

func TestWithOp(t *testing.T) {
	got := withOp("-C", []string{"-t", "nat", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "MASQUERADE"})
	want := []string{"-t", "nat", "-C", "POSTROUTING", "-s", "10.0.0.0/8", "-j", "MASQUERADE"}
	if !slices.Equal(got, want) {
		t.Errorf("%q", got)
	}
}
