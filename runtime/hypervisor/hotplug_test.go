package hypervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestRootPortsOnQ35Only(t *testing.T) {
	for _, machine := range []string{"q35", "pc-q35-7.2"} {
		c := testConfig(t)
		c.MachineType = machine
		_, args := flatArgs(t, c)
		for i := range NICSlots {
			want := "pcie-root-port,id=rp" + strconv.Itoa(i) + ",bus=pcie.0,chassis=" + strconv.Itoa(i+1) + ",slot=0,multifunction=off"
			if !hasPair(args, "-device", want) {
				t.Errorf("%s: root port %d missing (%s): %q", machine, i, want, args)
			}
		}
	}
	c := testConfig(t)
	c.MachineType = "pc"
	_, args := flatArgs(t, c)
	if strings.Contains(strings.Join(args, " "), "pcie-root-port") {
		t.Errorf("pc has no PCIe, but got root ports: %q", args)
	}
}

func TestHotplugBus(t *testing.T) {
	tests := []struct {
		machine string
		slot    int
		want    string
		wantErr bool
	}{
		{"q35", 0, "rp0", false},
		{"pc-q35-7.2", 3, "rp3", false},
		{"pc", 2, "pci.0", false},
		{"pc-i440fx-7.2", 0, "pci.0", false},
		{"microvm", 0, "", true},
	}
	for _, tt := range tests {
		got, err := hotplugBus(tt.machine, tt.slot)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("hotplugBus(%s, %d) = %q, %v", tt.machine, tt.slot, got, err)
		}
	}
}

func TestNICSlots(t *testing.T) {
	var s nicSlots
	for i := range NICSlots {
		slot, err := s.claim("nic" + strconv.Itoa(i))
		if err != nil || slot != i {
			t.Fatalf("claim %d: slot %d, %v", i, slot, err)
		}
	}
	if _, err := s.claim("nic1"); err == nil || !strings.Contains(err.Error(), "already plugged") {
		t.Errorf("claiming a plugged id: %v", err)
	}
	if _, err := s.claim("one-more"); !errors.Is(err, ErrNoNICSlot) {
		t.Errorf("claim beyond %d slots: %v, want ErrNoNICSlot", NICSlots, err)
	}
	if got := s.find("nic3"); got != 3 {
		t.Errorf("find nic3 = %d", got)
	}
	s.release(3)
	if got := s.find("nic3"); got != -1 {
		t.Errorf("find after release = %d", got)
	}
	if slot, err := s.claim("again"); err != nil || slot != 3 {
		t.Errorf("the freed slot is not reused: %d, %v", slot, err)
	}
}

func TestNICValidate(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mac, _ := net.ParseMAC("02:42:ac:11:00:02")
	tests := []struct {
		nic  NIC
		want string
	}{
		{NIC{ID: "nic3", MAC: mac, Tap: f}, ""},
		{NIC{ID: "3nic", MAC: mac, Tap: f}, "id"},
		{NIC{ID: "nic,3", MAC: mac, Tap: f}, "id"}, // would break QMP's option parsing
		{NIC{ID: "nic3", MAC: mac[:4], Tap: f}, "MAC"},
		{NIC{ID: "nic3", MAC: mac}, "tap"},
	}
	for _, tt := range tests {
		err := tt.nic.validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want error mentioning %q", tt.nic, err, tt.want)
		}
	}
}

func TestRemoveNICUnknown(t *testing.T) {
	vm := &VM{cfg: Config{ID: "x", MachineType: "q35"}}
	if err := vm.RemoveNIC(context.Background(), "nic9"); err == nil || !strings.Contains(err.Error(), "not plugged") {
		t.Errorf("RemoveNIC of an unknown NIC: %v", err)
	}
}
