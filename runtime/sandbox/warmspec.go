package sandbox

import (
	"github.com/docker/docker/oci/caps"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// dockerLike is confined as Docker confines a container by default: its capabilities and seccomp
// profile, and a masked file, a masked directory and a read-only path (one of each runs all the
// code the longer lists run). A pooled clone's throwaway container runs under it, so that the
// guest code confining a container (decoding, compiling and loading the filter, dropping
// capabilities, masking paths) is warm when a container of Docker's takes the clone.
func dockerLike() (*specs.Spec, error) {
	defaults := caps.DefaultCapabilities()
	spec := &specs.Spec{
		Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
			Bounding: defaults, Effective: defaults, Permitted: defaults,
		}},
		Linux: &specs.Linux{
			MaskedPaths:   []string{"/proc/kcore", "/proc/acpi"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
	profile, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, err
	}
	spec.Linux.Seccomp = profile
	return spec, nil
}
