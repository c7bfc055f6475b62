package agentproto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDNSFrameRoundTrip(t *testing.T) {
	frames := []DNSFrame{
		{ID: 1, Msg: bytes.Repeat([]byte{0xab}, 12)},
		{ID: 0xfffffffe, TCP: true, Msg: bytes.Repeat([]byte{1}, 4096)},
		{ID: 7, Msg: []byte{}},                                       // "no answer"
		{ID: 8, TCP: true, Msg: make([]byte, MaxDNSMessage)},         // the largest
		{ID: 9, Msg: []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00")}, // odd length
	}
	var buf bytes.Buffer
	for _, f := range frames {
		if err := WriteDNSFrame(&buf, f); err != nil {
			t.Fatalf("write %d: %v", f.ID, err)
		}
	}
	for _, want := range frames {
		got, err := ReadDNSFrame(&buf)
		if err != nil {
			t.Fatalf("read %d: %v", want.ID, err)
		}
		if got.ID != want.ID || got.TCP != want.TCP || !bytes.Equal(got.Msg, want.Msg) {
			t.Errorf("frame %d: got id %d tcp %v %d bytes", want.ID, got.ID, got.TCP, len(got.Msg))
		}
	}
	if _, err := ReadDNSFrame(&buf); !errors.Is(err, io.EOF) {
		t.Errorf("read past the last frame: %v, want io.EOF", err)
	}
}

func TestDNSFrameWireFormat(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteDNSFrame(&buf, DNSFrame{ID: 0x01020304, TCP: true, Msg: []byte("ab")}); err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 2, 3, 4, 1, 0, 2, 'a', 'b'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("wire bytes %v, want %v", buf.Bytes(), want)
	}
}

func TestDNSFrameErrors(t *testing.T) {
	if err := WriteDNSFrame(io.Discard, DNSFrame{Msg: make([]byte, MaxDNSMessage+1)}); !errors.Is(err, ErrDNSFrameTooLarge) {
		t.Errorf("oversized message: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated header", []byte{0, 0, 0}, io.ErrUnexpectedEOF},
		{"truncated message", []byte{0, 0, 0, 1, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
		{"header only, message missing", []byte{0, 0, 0, 1, 0, 0, 5}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		if _, err := ReadDNSFrame(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := ReadDNSFrame(bytes.NewReader([]byte{0, 0, 0, 1, 2, 0, 0})); err == nil || !strings.Contains(err.Error(), "flags") {
		t.Errorf("unknown flags: %v", err)
	}
}

func TestNetworkValidate(t *testing.T) {
	eth0 := Interface{Name: "eth0", MAC: "02:42:ac:11:00:02", MTU: 1500, Addresses: []string{"172.17.0.2/16", "fd00::2/64"}}
	eth1 := Interface{Name: "eth1", MAC: "02:42:ac:12:00:02", MTU: 9000}
	tests := []struct {
		name    string
		n       Network
		wantErr string
	}{
		{"empty (--network none)", Network{}, ""},
		{"typical", Network{
			Interfaces: []Interface{eth0, eth1},
			Routes: []Route{
				{Gateway: "172.17.0.1", Device: "eth0", Family: 4},
				{Dest: "10.0.0.0/8", Device: "eth1", Scope: ScopeLink},
				{Gateway: "fd00::1", Device: "eth0", Family: 6, Metric: 1024},
			},
		}, ""},
		{"bad name", Network{Interfaces: []Interface{{Name: "eth0; rm", MAC: eth0.MAC, MTU: 1500}}}, "interface name"},
		{"lo is not a NIC", Network{Interfaces: []Interface{{Name: "lo", MAC: eth0.MAC, MTU: 1500}}}, "interface name"},
		{"a spare card", Network{Interfaces: []Interface{{Name: "eth0", MAC: eth0.MAC, MTU: 1500, CardMAC: "02:6b:64:00:00:01"}}}, ""},
		{"a multicast card MAC", Network{Interfaces: []Interface{{Name: "eth0", MAC: eth0.MAC, MTU: 1500, CardMAC: "03:6b:64:00:00:01"}}}, "card MAC"},
		{"a malformed card MAC", Network{Interfaces: []Interface{{Name: "eth0", MAC: eth0.MAC, MTU: 1500, CardMAC: "nope"}}}, "card MAC"},
		{"long name", Network{Interfaces: []Interface{{Name: "abcdefghijklmnop", MAC: eth0.MAC, MTU: 1500}}}, "interface name"},
		{"bad MAC", Network{Interfaces: []Interface{{Name: "eth0", MAC: "02:42", MTU: 1500}}}, "MAC"},
		{"EUI-64 is not Ethernet", Network{Interfaces: []Interface{{Name: "eth0", MAC: "02:42:ac:11:00:02:00:01", MTU: 1500}}}, "MAC"},
		{"duplicate name", Network{Interfaces: []Interface{eth0, {Name: "eth0", MAC: eth1.MAC, MTU: 1500}}}, "twice"},
		{"duplicate MAC", Network{Interfaces: []Interface{eth0, {Name: "eth1", MAC: strings.ToUpper(eth0.MAC), MTU: 1500}}}, "twice"},
		{"MTU too small", Network{Interfaces: []Interface{{Name: "eth0", MAC: eth0.MAC, MTU: 10}}}, "MTU"},
		{"bad address", Network{Interfaces: []Interface{{Name: "eth0", MAC: eth0.MAC, MTU: 1500, Addresses: []string{"172.17.0.2"}}}}, "address"},
		{"route via unknown device", Network{Interfaces: []Interface{eth0}, Routes: []Route{{Gateway: "172.17.0.1", Device: "eth9", Family: 4}}}, "not one of the interfaces"},
		{"default route without family", Network{Interfaces: []Interface{eth0}, Routes: []Route{{Gateway: "172.17.0.1", Device: "eth0"}}}, "family"},
		{"bad destination", Network{Interfaces: []Interface{eth0}, Routes: []Route{{Dest: "10.0.0.0", Device: "eth0"}}}, "destination"},
		{"bad gateway", Network{Interfaces: []Interface{eth0}, Routes: []Route{{Gateway: "gw", Device: "eth0", Family: 4}}}, "not an IP"},
		{"bad scope", Network{Interfaces: []Interface{eth0}, Routes: []Route{{Dest: "10.0.0.0/8", Device: "eth0", Scope: "site"}}}, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.n.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}
