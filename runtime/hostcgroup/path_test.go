package hostcgroup

import (
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		name, in, id string
		want         Path
		err          string
	}{
		{name: "cgroupfs driver", in: "/docker/abc123", want: Path{Dir: "/docker/abc123"}},
		{name: "relative is from the root", in: "docker/abc", want: Path{Dir: "/docker/abc"}},
		{name: "trailing slash", in: "/docker/abc/", want: Path{Dir: "/docker/abc"}},
		{name: "empty: our own", in: "", id: "abc", want: Path{Dir: "/kata-deploy/abc"}},
		{name: "systemd driver", in: "system.slice:docker:abc",
			want: Path{Dir: "/system.slice/docker-abc.scope", Slice: "system.slice", Unit: "docker-abc.scope"}},
		{name: "systemd default slice", in: ":docker:abc",
			want: Path{Dir: "/system.slice/docker-abc.scope", Slice: "system.slice", Unit: "docker-abc.scope"}},
		{name: "systemd nested slice", in: "machine-kata.slice:kata:x",
			want: Path{Dir: "/machine.slice/machine-kata.slice/kata-x.scope", Slice: "machine-kata.slice", Unit: "kata-x.scope"}},
		{name: "systemd root slice", in: "-.slice:docker:abc",
			want: Path{Dir: "/docker-abc.scope", Slice: "-.slice", Unit: "docker-abc.scope"}},
		{name: "systemd without prefix", in: "system.slice::abc",
			want: Path{Dir: "/system.slice/abc.scope", Slice: "system.slice", Unit: "abc.scope"}},
		{name: "dot dot", in: "/docker/../../etc", err: `".."`},
		{name: "dot dot at the end", in: "/docker/..", err: `".."`},
		{name: "root cgroup", in: "/", err: "root cgroup"},
		{name: "double slash", in: "/docker//abc", err: `component ""`},
		{name: "odd characters", in: "/docker/a b", err: "component"},
		{name: "newline", in: "/docker/a\nb", err: "component"},
		{name: "systemd slice not a slice", in: "system:docker:abc", err: "not a systemd slice"},
		{name: "systemd slash in name", in: "system.slice:docker:a/b", err: "slice:prefix:name"},
		{name: "systemd dot dot in slice", in: "../x.slice:docker:abc", err: "not a systemd slice"},
		{name: "systemd bad nested slice", in: "a--b.slice:docker:abc", err: "invalid slice"},
		{name: "systemd name is a slice", in: "system.slice:docker:x.slice", err: "slice:prefix:name"},
		{name: "empty with bad id", in: "", id: "..", err: "invalid container id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePath(tt.in, tt.id)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePath(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePath(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}
