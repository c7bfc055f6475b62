package dockerd

import (
	"strings"
	"testing"
)

func TestResolveConfigFileFixtures(t *testing.T) {
	tests := []struct {
		name     string
		pid      int
		cwd      string // injected working directory; fixtures have no cwd link
		want     string
		source   string
		readOnly bool
		why      string // substring
	}{
		{"plain systemd dockerd", 1001, "", "/etc/docker/daemon.json", SourceDefault, false, "default"},
		{"--config-file", 1002, "", "/etc/docker/custom.json", SourceFlag, false, "--config-file /etc/docker/custom.json"},
		{"relative --config-file", 1003, "/srv/docker-cwd", "/srv/docker-cwd/relative.json", SourceFlag, false, "relative to its working directory"},
		{"relative --config-file, cwd unknown", 1003, "", "", SourceFlag, false, "cannot be read"},
		{"rootless with XDG_CONFIG_HOME", 1004, "", "/home/alice/.cfg/docker/daemon.json", SourceRootless, false, "ROOTLESSKIT_STATE_DIR"},
		{"rootless with HOME only", 1005, "", "/home/alice/.config/docker/daemon.json", SourceRootless, false, "$HOME/.config"},
		{"snap passing --config-file", 1006, "", "/var/snap/docker/current/config/daemon.json", SourceSnap, false, "--config-file /var/snap/docker/2915/config/daemon.json"},
		{"older snap without --config-file", 1007, "", "/var/snap/docker/current/config/daemon.json", SourceSnap, false, "snap"},
		{"NixOS store path", 1008, "", "/nix/store/3lbzb6ln4bdkq3kl6g4sp8n4bs0r7yr0-daemon.json", SourceFlag, true, "virtualisation.docker.daemon.settings"},
		{"Docker Desktop", 1009, "", "/home/alice/.docker/daemon.json", SourceDesktop, true, "Settings > Docker Engine"},
		{"non-root, environment unreadable", 1011, "", "", SourceRootless, false, "non-root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ReadProcess("testdata/proc", tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			p.Cwd = tt.cwd
			loc := ResolveConfigFile(p)
			if loc.Path != tt.want || loc.Source != tt.source || loc.ReadOnly != tt.readOnly {
				t.Errorf("got %+v\nwant path %q source %q readOnly %v", loc, tt.want, tt.source, tt.readOnly)
			}
			if !strings.Contains(loc.Why, tt.why) {
				t.Errorf("Why %q does not contain %q", loc.Why, tt.why)
			}
		})
	}
}

func TestResolveConfigFileCases(t *testing.T) {
	rlk := map[string]string{"ROOTLESSKIT_STATE_DIR": "/tmp/rk", "HOME": "/home/bob"}
	tests := []struct {
		name     string
		p        Process
		want     string
		source   string
		readOnly bool
	}{
		{"flag wins over rootless", Process{UID: 1000, Args: []string{"dockerd", "--config-file", "/home/bob/d.json"}, Env: rlk},
			"/home/bob/d.json", SourceFlag, false},
		{"flag path is cleaned", Process{Args: []string{"dockerd", "--config-file=/etc/docker/../docker/x.json"}},
			"/etc/docker/x.json", SourceFlag, false},
		{"relative flag with dot-dot", Process{Cwd: "/var/lib/d", Args: []string{"dockerd", "--config-file=../conf/d.json"}},
			"/var/lib/conf/d.json", SourceFlag, false},
		{"empty --config-file reads nothing", Process{Args: []string{"dockerd", "--config-file="}}, "", SourceFlag, true},
		// dockerd honours XDG only under RootlessKit; --rootless alone keeps /etc (moby #38702).
		{"--rootless without RootlessKit", Process{Args: []string{"dockerd", "--rootless"}, Env: map[string]string{"HOME": "/root"}},
			"/etc/docker/daemon.json", SourceDefault, false},
		{"non-root without RootlessKit", Process{UID: 1000, Args: []string{"dockerd"}, Env: map[string]string{"HOME": "/home/bob"}},
			"/etc/docker/daemon.json", SourceDefault, false},
		{"dockerd-rootless.sh variables", Process{UID: 1000, Args: []string{"dockerd"},
			Env: map[string]string{"DOCKERD_ROOTLESS_ROOTLESSKIT_NET": "slirp4netns", "HOME": "/home/bob"}},
			"/home/bob/.config/docker/daemon.json", SourceRootless, false},
		{"root inside RootlessKit (uid mapped to 0)", Process{UID: 0, Args: []string{"dockerd"}, Env: rlk},
			"/home/bob/.config/docker/daemon.json", SourceRootless, false},
		{"rootless with no HOME either", Process{UID: 1000, Args: []string{"dockerd"}, Env: map[string]string{"ROOTLESSKIT_STATE_DIR": "/tmp/rk"}},
			"", SourceRootless, false},
		{"--rootless, environment unreadable", Process{Args: []string{"dockerd", "--rootless"}}, "", SourceRootless, false},
		{"snap detected by exe", Process{Exe: "/snap/docker/3001/bin/dockerd", Args: []string{"dockerd"}},
			"/var/snap/docker/current/config/daemon.json", SourceSnap, false},
		{"snap with a custom config elsewhere", Process{Exe: "/snap/docker/3001/bin/dockerd", Args: []string{"dockerd", "--config-file=/etc/docker/mine.json"}},
			"/etc/docker/mine.json", SourceFlag, false},
		{"nix-built dockerd with a writable config", Process{Exe: "/nix/store/abc-docker-27/libexec/docker/dockerd",
			Args: []string{"/nix/store/abc-docker-27/bin/dockerd", "--config-file=/etc/docker/daemon.json"}},
			"/etc/docker/daemon.json", SourceFlag, false},
		{"nix store via relative path", Process{Cwd: "/nix/store", Args: []string{"dockerd", "--config-file=xyz-daemon.json"}},
			"/nix/store/xyz-daemon.json", SourceFlag, true},
		{"desktop by exe, no HOME", Process{Exe: "/opt/docker-desktop/bin/com.docker.backend"}, "", SourceDesktop, true},
		{"desktop by comm", Process{Comm: "com.docker.back", Env: map[string]string{"HOME": "/h"}}, "/h/.docker/daemon.json", SourceDesktop, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := ResolveConfigFile(tt.p)
			if loc.Path != tt.want || loc.Source != tt.source || loc.ReadOnly != tt.readOnly {
				t.Errorf("got %+v\nwant path %q source %q readOnly %v", loc, tt.want, tt.source, tt.readOnly)
			}
			if loc.Why == "" {
				t.Error("Why is empty")
			}
		})
	}
}
