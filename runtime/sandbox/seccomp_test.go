package sandbox

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCompileSeccomp: the host compiles a profile into a program of whole BPF instructions (Docker's
// default profile, a tiny one); a spec without a profile gives no filter; a profile the runtime
// cannot apply is refused with the reason, before anything starts.
func TestCompileSeccomp(t *testing.T) {
	docker, err := dockerLike()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    *specs.Spec
		filter  bool
		wantErr string
	}{
		{name: "Docker's default profile", spec: docker, filter: true},
		{name: "allow all but one", spec: &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno}},
		}}}, filter: true},
		{name: "no profile", spec: &specs.Spec{Linux: &specs.Linux{}}},
		{name: "no linux section", spec: &specs.Spec{}},
		{name: "user notification", spec: &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow, ListenerPath: "/run/listener.sock",
		}}}, wantErr: "listenerPath"},
		{name: "unknown flag", spec: &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NONSENSE"},
		}}}, wantErr: "NONSENSE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := compileSeccomp(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "seccomp profile") {
					t.Fatalf("err = %v, want one naming the seccomp profile and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !tt.filter && f != nil:
				t.Errorf("filter %+v for a spec without a profile", f)
			case tt.filter && (f == nil || len(f.Program) == 0 || len(f.Program)%8 != 0):
				t.Errorf("filter %+v, want whole 8-byte instructions", f)
			}
		})
	}
}
