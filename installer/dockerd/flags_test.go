package dockerd

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDaemonFlags(t *testing.T) {
	tests := []struct {
		name string
		args string // split on spaces; "∅" stands for an empty argument
		want Flags
	}{
		{"systemd default", "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
			Flags{Hosts: []string{"fd://"}}},
		{"config file, space form", "dockerd --config-file /etc/docker/custom.json",
			Flags{ConfigFile: "/etc/docker/custom.json", ConfigFileSet: true}},
		{"config file, = form", "dockerd --config-file=relative.json", Flags{ConfigFile: "relative.json", ConfigFileSet: true}},
		{"empty config file", "dockerd --config-file=", Flags{ConfigFileSet: true}},
		{"empty config file as separate argument", "dockerd --config-file ∅", Flags{ConfigFileSet: true}},
		{"later config file wins", "dockerd --config-file a.json --config-file=b.json", Flags{ConfigFile: "b.json", ConfigFileSet: true}},
		{"snap", "/snap/docker/2915/bin/dockerd --group docker --exec-root=/run/snap.docker --data-root=/var/snap/docker/common/var-lib-docker --pidfile=/run/snap.docker/docker.pid --config-file=/var/snap/docker/2915/config/daemon.json",
			Flags{ConfigFile: "/var/snap/docker/2915/config/daemon.json", ConfigFileSet: true, PIDFile: "/run/snap.docker/docker.pid",
				DataRoot: "/var/snap/docker/common/var-lib-docker", ExecRoot: "/run/snap.docker"}},
		{"repeated hosts, all forms", "dockerd -H unix:///run/a.sock --host=tcp://127.0.0.1:2375 -Hfd:// -H=unix:///b.sock --host unix:///c.sock",
			Flags{Hosts: []string{"unix:///run/a.sock", "tcp://127.0.0.1:2375", "fd://", "unix:///b.sock", "unix:///c.sock"}}},
		{"short pidfile", "dockerd -p /run/d.pid", Flags{PIDFile: "/run/d.pid"}},
		{"short pidfile attached", "dockerd -p/run/d.pid", Flags{PIDFile: "/run/d.pid"}},
		{"combined short booleans before -H", "dockerd -DH unix:///x.sock", Flags{Hosts: []string{"unix:///x.sock"}}},
		{"combined with attached value", "dockerd -DHunix:///x.sock", Flags{Hosts: []string{"unix:///x.sock"}}},
		{"short value flags do not eat flags after them", "dockerd -G docker -l debug -s overlay2 -b br0 -H fd://",
			Flags{Hosts: []string{"fd://"}}},
		{"deprecated -g and --graph", "dockerd -g /old --graph=/older", Flags{DataRoot: "/older"}},
		{"rootless bare", "dockerd --rootless", Flags{Rootless: true}},
		{"rootless true", "dockerd --rootless=true", Flags{Rootless: true}},
		{"rootless false", "dockerd --rootless --rootless=false", Flags{}},
		{"runtimes", "dockerd --default-runtime=kata --add-runtime kata=/opt/kata/bin/kata-runtime --add-runtime=crun=/usr/bin/crun",
			Flags{DefaultRuntime: "kata", Runtimes: []string{"kata=/opt/kata/bin/kata-runtime", "crun=/usr/bin/crun"}}},
		{"unknown flags with values are skipped", "dockerd --log-opt max-size=10m --storage-opt dm.basesize=20G --data-root /d",
			Flags{DataRoot: "/d"}},
		{"unknown boolean before a known flag", "dockerd --debug --live-restore --exec-root /x", Flags{ExecRoot: "/x"}},
		{"dangling value flag at the end", "dockerd --pidfile", Flags{}},
		{"dangling short value flag at the end", "dockerd -H", Flags{}},
		{"stops at --", "dockerd -- --config-file x", Flags{}},
		{"no args", "", Flags{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var args []string
			for _, a := range strings.Fields(tt.args) {
				if a == "∅" {
					a = ""
				}
				args = append(args, a)
			}
			if got := ParseDaemonFlags(args); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRuntimeNames(t *testing.T) {
	f := Flags{Runtimes: []string{"kata=/opt/kata/bin/kata-runtime", "crun=/usr/bin/crun", "odd"}}
	if got := f.RuntimeNames(); !reflect.DeepEqual(got, []string{"kata", "crun", "odd"}) {
		t.Errorf("got %v", got)
	}
}

func TestPIDFiles(t *testing.T) {
	if got := (Flags{}).EffectivePIDFile(); got != "/var/run/docker.pid" {
		t.Errorf("default = %q", got)
	}
	if got := (Flags{PIDFile: "/run/x.pid"}).EffectivePIDFile(); got != "/run/x.pid" {
		t.Errorf("explicit = %q", got)
	}
	tests := []struct {
		pid  int
		want string
	}{
		{1001, "/var/run/docker.pid"},
		{1006, "/run/snap.docker/docker.pid"},
		{1004, "/run/user/1000/docker.pid"}, // RootlessKit: $XDG_RUNTIME_DIR/docker.pid
		{1011, ""},                          // rootless, environment unreadable
	}
	for _, tt := range tests {
		p, err := ReadProcess("testdata/proc", tt.pid)
		if err != nil {
			t.Fatal(err)
		}
		if got := PIDFileOf(p); got != tt.want {
			t.Errorf("pid %d: PIDFileOf = %q, want %q", tt.pid, got, tt.want)
		}
	}
}
