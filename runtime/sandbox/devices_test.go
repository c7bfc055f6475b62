package sandbox

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

func i64(v int64) *int64 { return &v }

// dockerRules are the device cgroup rules Docker writes: deny everything, then allow each device.
func dockerRules(extra ...specs.LinuxDeviceCgroup) *specs.LinuxResources {
	return &specs.LinuxResources{Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, extra...)}
}

func TestPlanDevices(t *testing.T) {
	hostBlockPath = func(major, minor int64) (string, error) {
		if major == 7 {
			return "/dev/loop" + string(rune('0'+minor)), nil
		}
		return "", errors.New("the host has no such block device")
	}
	defer func() { hostBlockPath = hostBlockNode }()
	loop := specs.LinuxDevice{Path: "/dev/xvdc", Type: "b", Major: 7, Minor: 3}
	fuse := specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}
	serial := specs.LinuxDevice{Path: "/dev/ttyS0", Type: "c", Major: 4, Minor: 64}
	tests := []struct {
		name    string
		linux   *specs.Linux
		blocks  []hypervisor.Block
		devs    []agentproto.Device
		guest   int
		dropped int
		err     string
	}{
		{name: "no linux section"},
		{name: "read-write disk", linux: &specs.Linux{Devices: []specs.LinuxDevice{loop}, Resources: dockerRules(specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: i64(7), Minor: i64(3), Access: "rwm"})},
			blocks: []hypervisor.Block{{ID: "kdev0", Path: "/dev/loop3", Device: true}},
			devs:   []agentproto.Device{{Tag: "kdev0", ContainerPath: "/dev/xvdc", HostMajor: 7, HostMinor: 3}}, guest: 1},
		{name: "read-only disk (:r)", linux: &specs.Linux{Devices: []specs.LinuxDevice{loop}, Resources: dockerRules(specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: i64(7), Minor: i64(3), Access: "r"})},
			blocks: []hypervisor.Block{{ID: "kdev0", Path: "/dev/loop3", Device: true, ReadOnly: true}},
			devs:   []agentproto.Device{{Tag: "kdev0", ContainerPath: "/dev/xvdc", HostMajor: 7, HostMinor: 3}}, guest: 1},
		{name: "virtual char device is the guest's", linux: &specs.Linux{Devices: []specs.LinuxDevice{fuse}}, guest: 1},
		{name: "host hardware refused", linux: &specs.Linux{Devices: []specs.LinuxDevice{fuse, serial}}, err: "/dev/ttyS0 (char 4:64) cannot be given to a VM"},
		{name: "missing host disk", linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/sdz", Type: "b", Major: 8, Minor: 240}}}, err: "the host has no such block device"},
		{name: "privileged keeps host devices on the host", linux: &specs.Linux{Devices: []specs.LinuxDevice{loop, fuse, serial},
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}}}, guest: 1, dropped: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, guest, err := planDevices(&specs.Spec{Linux: tt.linux})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(guest) != tt.guest || h.dropped != tt.dropped {
				t.Errorf("guest devices %d, dropped %d; want %d, %d", len(guest), h.dropped, tt.guest, tt.dropped)
			}
			if !slices.Equal(h.blocks, tt.blocks) || !slices.Equal(h.devs, tt.devs) {
				t.Errorf("blocks %+v devs %+v\nwant %+v %+v", h.blocks, h.devs, tt.blocks, tt.devs)
			}
		})
	}
}

func TestUeventDevName(t *testing.T) {
	for in, want := range map[string]string{
		"MAJOR=7\nMINOR=3\nDEVNAME=loop3\nDEVTYPE=disk\n": "loop3",
		"MAJOR=8\nMINOR=1\nDEVNAME=sda1\n":                "sda1",
		"MAJOR=8\n":                                       "",
	} {
		if got := ueventDevName([]byte(in)); got != want {
			t.Errorf("ueventDevName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGuestWithDevicesLeavesTheHostSpec(t *testing.T) {
	host := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/a"}}}}
	g := guestWithDevices(host, nil)
	if len(g.Linux.Devices) != 0 || len(host.Linux.Devices) != 1 {
		t.Fatalf("guest %v host %v", g.Linux.Devices, host.Linux.Devices)
	}
}
