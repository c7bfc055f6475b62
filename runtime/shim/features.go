package shim

import (
	"fmt"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
)

// ociFeatures are the OCI runtime features (runtime-spec features.md) of a VM container: what
// the guest agent does with a spec. containerd reads them from `containerd-shim-kata-v2 -info`
// (RuntimeInfo.Features) to check a container's needs before it starts a shim.
func ociFeatures() *features.Features {
	yes, no := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		MountOptions:  containerinit.MountOptions(),
		Linux: &features.Linux{
			// The network namespace is the VM's; user and time namespaces are not created.
			Namespaces:   []string{string(specs.MountNamespace), string(specs.PIDNamespace), string(specs.UTSNamespace), string(specs.IPCNamespace), string(specs.NetworkNamespace), string(specs.CgroupNamespace)},
			Capabilities: containerinit.Capabilities(),
			Cgroup:       &features.Cgroup{V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &no},
			Seccomp:      &features.Seccomp{Enabled: &yes},
			Apparmor:     &features.Apparmor{Enabled: &no},
			Selinux:      &features.Selinux{Enabled: &no},
			IntelRdt:     &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{
				IDMap: &features.IDMap{Enabled: &no},
			},
		},
	}
}

// withFeatures adds the OCI runtime features to the runtime's info.
func withFeatures(info *types.RuntimeInfo) (*types.RuntimeInfo, error) {
	f, err := typeurl.MarshalAnyToProto(ociFeatures())
	if err != nil {
		return nil, fmt.Errorf("encoding the OCI runtime features: %w", err)
	}
	info.Features = f
	return info, nil
}
