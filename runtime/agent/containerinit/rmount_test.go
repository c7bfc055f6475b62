package containerinit

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRecursiveOptions(t *testing.T) {
	m := parseMountOptions([]string{"rbind", "rro", "rnosuid", "rsuid", "rnoexec"})
	if m.recursive.set != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOEXEC || m.recursive.clear != unix.MOUNT_ATTR_NOSUID {
		t.Errorf("recursive attrs %+v", m.recursive)
	}
	if len(m.ignored) != 0 || m.data != "" {
		t.Errorf("ignored %q data %q", m.ignored, m.data)
	}
}

func TestMountOptionsFeature(t *testing.T) {
	got := MountOptions()
	for _, want := range []string{"ro", "rro", "rbind", "rprivate", "nosuid"} {
		if !slices.Contains(got, want) {
			t.Errorf("MountOptions() lacks %q: %q", want, got)
		}
	}
	for _, not := range []string{"idmap", "tmpcopyup", "rnoatime"} {
		if slices.Contains(got, not) {
			t.Errorf("MountOptions() claims %q, which the agent ignores", not)
		}
	}
}
