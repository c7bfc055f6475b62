package containerinit

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCapabilityMask(t *testing.T) {
	docker := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE"}
	tests := []struct {
		names   []string
		mask    uint64
		unknown []string
	}{
		{nil, 0, nil},
		{docker, 0xa80425fb, nil},
		{[]string{"CAP_SYS_ADMIN"}, 1 << 21, nil},
		{[]string{"sys_admin", "cap_net_admin"}, 1<<21 | 1<<12, nil},
		{[]string{"CAP_CHECKPOINT_RESTORE", "CAP_BPF", "CAP_PERFMON"}, 1<<40 | 1<<39 | 1<<38, nil},
		{[]string{"CAP_CHOWN", "CAP_FLY"}, 1, []string{"CAP_FLY"}},
	}
	for _, tt := range tests {
		mask, unknown := capabilityMask(tt.names)
		if mask != tt.mask || !reflect.DeepEqual(unknown, tt.unknown) {
			t.Errorf("capabilityMask(%v) = %#x, %v; want %#x, %v", tt.names, mask, unknown, tt.mask, tt.unknown)
		}
	}
	names := capabilityNames()
	if names[0] != "CAP_CHOWN" || names[21] != "CAP_SYS_ADMIN" || names[40] != "CAP_CHECKPOINT_RESTORE" {
		t.Errorf("capability numbering is off: %v", names)
	}
}

func TestParseCapabilities(t *testing.T) {
	c := parseCapabilities(&specs.LinuxCapabilities{
		Bounding: []string{"CAP_KILL", "CAP_X"}, Effective: []string{"CAP_KILL"},
		Permitted: []string{"CAP_KILL"}, Inheritable: []string{"CAP_CHOWN"}, Ambient: []string{"CAP_Y"},
	})
	if c.bounding != 1<<5 || c.effective != 1<<5 || c.permitted != 1<<5 || c.inheritable != 1 || c.ambient != 0 {
		t.Errorf("got %+v", c)
	}
	if !reflect.DeepEqual(c.unknown, []string{"CAP_X", "CAP_Y"}) {
		t.Errorf("unknown %v", c.unknown)
	}
}
