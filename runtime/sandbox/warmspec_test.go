package sandbox

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestDockerLike: the throwaway container of a pooled clone is confined as Docker confines a
// container by default: Docker's capabilities and its seccomp profile (which refuses by default
// and allows by name), a masked file, a masked directory and a read-only path.
func TestDockerLike(t *testing.T) {
	s, err := dockerLike()
	if err != nil {
		t.Fatal(err)
	}
	if caps := s.Process.Capabilities; caps == nil || !slices.Contains(caps.Bounding, "CAP_NET_BIND_SERVICE") || slices.Contains(caps.Bounding, "CAP_SYS_ADMIN") {
		t.Errorf("capabilities are not Docker's defaults: %+v", caps)
	}
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 10 {
		t.Fatalf("seccomp is not Docker's default profile: %+v", sc)
	}
	if len(s.Linux.MaskedPaths) != 2 || len(s.Linux.ReadonlyPaths) != 1 {
		t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}
