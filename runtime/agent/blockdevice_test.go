package agent

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

func p64(v int64) *int64 { return &v }

func TestMapDevices(t *testing.T) {
	// Host 7:0 becomes guest 254:0 and host 254:0 becomes guest 254:16: each entry is
	// renumbered once, not chained.
	spec := &specs.Spec{Linux: &specs.Linux{
		Devices: []specs.LinuxDevice{
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
			{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 0},
			{Path: "/dev/xvdb", Type: "b", Major: 254, Minor: 0},
		},
		Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "b", Major: p64(7), Minor: p64(0), Access: "rwm"},
			{Allow: true, Type: "b", Major: p64(254), Minor: p64(0), Access: "r"},
			{Allow: true, Type: "c", Major: p64(1), Minor: p64(3), Access: "rwm"},
		}},
	}}
	devs := []agentproto.Device{
		{Tag: "kdev0", ContainerPath: "/dev/xvda", HostMajor: 7, HostMinor: 0},
		{Tag: "kdev1", ContainerPath: "/dev/xvdb", HostMajor: 254, HostMinor: 0},
	}
	guest := map[string]devNumber{"kdev0": {254, 0}, "kdev1": {254, 16}}
	find := func(serial string) (devNumber, error) {
		n, ok := guest[serial]
		if !ok {
			return devNumber{}, errors.New("no disk")
		}
		return n, nil
	}
	if err := mapDevices(spec, devs, find); err != nil {
		t.Fatal(err)
	}
	got := spec.Linux.Devices
	if got[0].Major != 1 || got[1].Major != 254 || got[1].Minor != 0 || got[2].Major != 254 || got[2].Minor != 16 {
		t.Errorf("devices = %+v", got)
	}
	rules := spec.Linux.Resources.Devices
	if *rules[1].Minor != 0 || *rules[2].Minor != 16 || rules[2].Access != "r" || *rules[3].Major != 1 {
		t.Errorf("rules renumbered wrong: %d:%d %d:%d", *rules[1].Major, *rules[1].Minor, *rules[2].Major, *rules[2].Minor)
	}

	if err := mapDevices(spec, []agentproto.Device{{Tag: "kdev9", ContainerPath: "/dev/xvdz"}}, find); err == nil {
		t.Error("a disk the guest does not have was accepted")
	}
	guest["kdev9"] = devNumber{254, 32}
	if err := mapDevices(spec, []agentproto.Device{{Tag: "kdev9", ContainerPath: "/dev/xvdz"}}, find); err == nil {
		t.Error("a device missing from the spec was accepted")
	}
}
