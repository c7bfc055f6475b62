package plugin

import (
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestHostDirOf(t *testing.T) {
	const state = "/var/lib/kata-deploy/plugins/block"
	prop := "/var/lib/docker/plugins/" + "ab12" + "/propagated-mount"
	for _, tc := range []struct {
		name   string
		mounts []*mountinfo.Info
		want   string // "" : an error
	}{
		{"propagated mount", []*mountinfo.Info{{Mountpoint: state, Root: prop}}, prop},
		{"the top one of two", []*mountinfo.Info{{Mountpoint: state, Root: "/old"}, {Mountpoint: state, Root: prop}}, prop},
		{"nothing mounted there", []*mountinfo.Info{{Mountpoint: "/", Root: "/"}}, ""},
		{"a file system's root", []*mountinfo.Info{{Mountpoint: state, Root: "/", Source: "tmpfs", FSType: "tmpfs"}}, ""},
		{"not clean", []*mountinfo.Info{{Mountpoint: state, Root: "/a/../b"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostDirOf(tc.mounts, state)
			if (err == nil) != (tc.want != "") || got != tc.want {
				t.Errorf("hostDirOf = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestResolveHostStateDir(t *testing.T) {
	for _, opt := range []string{"", "/host/path"} {
		if got, err := resolveHostStateDir(opt, "/state", nil); err != nil || got != opt {
			t.Errorf("resolveHostStateDir(%q) = %q, %v; want it unchanged", opt, got, err)
		}
	}
}
