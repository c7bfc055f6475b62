package hostcgroup

import (
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

func TestResources(t *testing.T) {
	overhead := int64(QEMUOverheadMiB) * mib
	tests := []struct {
		name  string
		in    *specs.LinuxResources
		vmMiB int
		want  *specs.LinuxResources
	}{
		{name: "nil", in: nil, want: &specs.LinuxResources{}},
		{name: "no limits", in: &specs.LinuxResources{}, want: &specs.LinuxResources{}},
		{
			name: "cpus 0.5",
			in:   &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(50000)), Period: ptr(uint64(100000))}},
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(50000)), Period: ptr(uint64(100000))}},
		},
		{
			name: "shares and cpuset, realtime dropped",
			in: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(512)), Cpus: "0", Mems: "0",
				RealtimeRuntime: ptr(int64(1000)), RealtimePeriod: ptr(uint64(2000))}},
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(512)), Cpus: "0", Mems: "0"}},
		},
		{
			name:  "memory: VM size plus QEMU's overhead, swap and reservation dropped",
			in:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(256 * mib)), Swap: ptr(int64(512 * mib)), Reservation: ptr(int64(mib))}},
			vmMiB: 384,
			want:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(384*mib + overhead)}},
		},
		{
			name:  "memory never below the container's limit",
			in:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1024*mib + 1))}},
			vmMiB: 512,
			want:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(1025*mib + overhead)}},
		},
		{
			name: "memory unlimited",
			in:   &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-1))}},
			want: &specs.LinuxResources{},
		},
		{
			name: "pids above the floor",
			in:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(300))}},
			want: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(300))}},
		},
		{
			name: "pids raised to what QEMU needs",
			in:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}},
			want: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(MinPids))}},
		},
		{
			name: "pids unlimited",
			in:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}},
			want: &specs.LinuxResources{},
		},
		{
			name: "blkio weight kept, devices dropped",
			in: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(300))},
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			want: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr(uint16(300))}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := json.Marshal(Resources(tt.in, tt.vmMiB))
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Fatalf("Resources = %s\nwant        %s", got, want)
			}
		})
	}
}
