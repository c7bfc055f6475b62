package sandbox

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/runtime/agent/containerinit"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
)

// compileSeccomp compiles the spec's seccomp profile here, on the host (agentproto.Seccomp says
// why); nil without one. The syscalls of the profile the compiler does not know are left out, as
// runc leaves them out, silently: Docker's default profile names a few.
func compileSeccomp(spec *specs.Spec) (*agentproto.Seccomp, error) {
	if spec == nil || spec.Linux == nil || spec.Linux.Seccomp == nil {
		return nil, nil
	}
	f, _, err := containerinit.CompileSeccomp(spec.Linux.Seccomp)
	if err != nil {
		return nil, fmt.Errorf("the container's seccomp profile: %w", err)
	}
	return &agentproto.Seccomp{Program: f.Program, Flags: uint64(f.Flags)}, nil
}
