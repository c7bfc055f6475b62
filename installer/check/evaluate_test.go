package check

import (
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/internal/accel"
	"github.com/kata-deploy/kata-deploy/internal/qemusandbox"
)

// goodFacts is a host with everything: a KVM-capable Debian with Docker 29.
func goodFacts() Facts {
	return Facts{
		Distro:        hostinfo.Distro{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", PackageManager: "apt"},
		KernelRelease: "6.1.0-40-amd64",
		CgroupVersion: 2,
		Root:          true,
		CPU:           accel.CPU{Vendor: "GenuineIntel", VMX: true},
		KVM:           accel.KVM{DevicePresent: true, APIVersion: 12, CanCreateVM: true, Usable: true},
		Devices: []hostinfo.Device{
			{Path: "/dev/net/tun", Present: true, CharDevice: true},
			{Path: "/dev/vhost-net", Present: true, CharDevice: true},
			{Path: "/dev/vhost-vsock", Present: true, CharDevice: true},
		},
		QEMU: hostinfo.QEMU{Path: "/usr/bin/qemu-system-x86_64", Version: "7.2.19", QbootPath: "/usr/share/qemu/qboot.rom",
			Sandbox:       qemusandbox.Support{Enabled: true, Options: qemusandbox.Wanted},
			VirtiofsdPath: "/usr/lib/qemu/virtiofsd", Virtiofsd: qemusandbox.Virtiofsd{Namespace: true, Seccomp: true}},
		Docker: Docker{Reachable: true, Host: "unix:///var/run/docker.sock", Version: "29.0.1", APIVersion: "1.52",
			ShimV2Runtimes: true, ConfigFile: "/etc/docker/daemon.json", ConfigFileSource: "default",
			Runtimes: []string{"runc"}, DefaultRuntime: "runc", CgroupDriver: "systemd", CgroupVersion: "2"},
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(*Facts)
		wantCanRun bool
		line       string // a line to inspect
		wantStatus Status
		wantRemedy string // substring of the remedy
	}{
		{"all good", func(*Facts) {}, true, "virtualization.accelerator", OK, ""},
		{"paravirtual KVM falls back to tcg with a warning", func(f *Facts) {
			f.CPU = accel.CPU{Vendor: "GenuineIntel", Hypervisor: true}
			f.KVM = accel.KVM{DevicePresent: true, APIVersion: 12, CanCreateVM: true, Reason: "paravirtual KVM"}
		}, true, "virtualization.accelerator", Warn, "slower"},
		{"no /dev/kvm is a warning, not a failure", func(f *Facts) {
			f.KVM = accel.KVM{Reason: "/dev/kvm is absent"}
		}, true, "virtualization.kvm-device", Warn, "modprobe"},
		{"no QEMU fails with the distro's package", func(f *Facts) { f.QEMU, f.QEMUErr = hostinfo.QEMU{}, "not found" },
			false, "hypervisor.qemu", Fail, "apt-get install qemu-system-x86"},
		{"no QEMU on Fedora names dnf", func(f *Facts) {
			f.QEMU, f.QEMUErr = hostinfo.QEMU{}, "not found"
			f.Distro.PackageManager = "dnf"
		}, false, "hypervisor.qemu", Fail, "dnf install qemu-kvm"},
		{"no qboot warns", func(f *Facts) { f.QEMU.QbootPath = "" }, true, "hypervisor.qboot", Warn, "SeaBIOS"},
		{"complete QEMU sandbox", func(*Facts) {}, true, "hypervisor.sandbox", OK, ""},
		{"QEMU without seccomp warns", func(f *Facts) {
			f.QEMU.Sandbox = qemusandbox.Support{Missing: qemusandbox.Wanted, Reason: "-sandbox is disabled at compile time"}
		}, true, "hypervisor.sandbox", Warn, "built with seccomp"},
		{"partial QEMU sandbox warns", func(f *Facts) {
			f.QEMU.Sandbox = qemusandbox.Support{Enabled: true, Options: []string{"obsolete"}, Missing: []string{"spawn"}, Reason: "spawn: Invalid parameter"}
		}, true, "hypervisor.sandbox", Warn, "upgrade QEMU"},
		{"virtiofsd sandboxed", func(*Facts) {}, true, "hypervisor.virtiofsd-sandbox", OK, ""},
		{"virtiofsd without namespace sandbox warns", func(f *Facts) { f.QEMU.Virtiofsd.Namespace = false },
			true, "hypervisor.virtiofsd-sandbox", Warn, "virtio-9p"},
		{"no tun fails", func(f *Facts) { f.Devices[0].Present = false }, false, "devices.tun", Fail, "modprobe tun"},
		{"no vhost-vsock is fine", func(f *Facts) { f.Devices[2].Present = false }, true, "devices.vhost-vsock", OK, ""},
		{"Docker unreachable fails", func(f *Facts) { f.Docker = Docker{Host: "unix:///x.sock", Error: "no such file"} },
			false, "docker.daemon", Fail, "DOCKER_HOST"},
		{"Docker 20.10 fails and says what to upgrade to", func(f *Facts) {
			f.Docker.Version, f.Docker.ShimV2Runtimes = "20.10.24", false
		}, false, "docker.version", Fail, "upgrade Docker Engine to 24"},
		{"read-only daemon.json warns", func(f *Facts) {
			f.Docker.ConfigFile, f.Docker.ConfigReadOnly, f.Docker.ConfigFileSource = "/nix/store/x-daemon.json", true, "default"
		}, true, "docker.config-file", Warn, "by hand"},
		{"upstream Kata warns", func(f *Facts) {
			f.Existing = []hostinfo.Install{{Kind: "upstream-kata", Path: "/opt/kata", Version: "3.2.0"}}
		}, true, "existing.upstream-kata", Warn, "beside it"},
		{"not root warns", func(f *Facts) { f.Root = false }, true, "host.root", Warn, "sudo"},
		{"unknown distro warns", func(f *Facts) { f.Distro, f.DistroErr = hostinfo.Distro{}, "no os-release" },
			true, "host.distro", Warn, "--kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := goodFacts()
			tt.mutate(&f)
			r := Evaluate(f)
			if r.CanRunVMContainers != tt.wantCanRun {
				t.Errorf("CanRunVMContainers = %v, want %v", r.CanRunVMContainers, tt.wantCanRun)
			}
			l, ok := r.Line(tt.line)
			if !ok {
				t.Fatalf("no line %q in report", tt.line)
			}
			if l.Status != tt.wantStatus {
				t.Errorf("%s status = %s (%s), want %s", tt.line, l.Status, l.Value, tt.wantStatus)
			}
			if !strings.Contains(l.Remedy, tt.wantRemedy) || (tt.wantStatus != OK && l.Remedy == "") {
				t.Errorf("%s remedy = %q, want it to mention %q", tt.line, l.Remedy, tt.wantRemedy)
			}
		})
	}
}

func TestShimV2Supported(t *testing.T) {
	for v, want := range map[string]bool{
		"29.0.1": true, "24.0.0": true, "24.0.0-rc.1": true, "23.0.6": false, "20.10.24": false, "": false, "dev": false,
	} {
		if got := ShimV2Supported(v); got != want {
			t.Errorf("ShimV2Supported(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestEveryLineHasStableID(t *testing.T) {
	r := Evaluate(goodFacts())
	seen := map[string]bool{}
	for _, s := range r.Sections {
		for _, l := range s.Lines {
			if l.ID == "" || seen[l.ID] || !strings.Contains(l.ID, ".") {
				t.Errorf("bad or duplicate line id %q", l.ID)
			}
			seen[l.ID] = true
		}
	}
}

func TestPluginLines(t *testing.T) {
	vsock, nsock := "/run/docker/plugins/kata-block.sock", "/run/docker/plugins/kata-net.sock"
	vol := func(present, reachable bool) Plugin {
		return Plugin{Name: "kata-block", Socket: vsock, Present: present, Reachable: reachable}
	}
	net := func(present, reachable bool) Plugin {
		return Plugin{Name: "kata-net", Socket: nsock, Present: present, Reachable: reachable}
	}
	type want struct {
		status Status
		value  string
	}
	for _, tc := range []struct {
		name     string
		vol, net Plugin
		d        Docker
		vw, nw   want
	}{
		{"not installed", vol(false, false), net(false, false), Docker{Reachable: true},
			want{OK, "not installed"}, want{OK, "not installed"}},
		{"serving", vol(true, true), net(true, true), Docker{Reachable: true, BlockVolumes: 2, NetNetworks: 3},
			want{OK, "serving " + vsock + "; Docker has 2 volume(s) of it"}, want{OK, "serving " + nsock + "; Docker has 3 network(s) of it"}},
		{"stale sockets", vol(true, false), net(true, false), Docker{Reachable: true},
			want{Warn, "nothing serves it"}, want{Warn, "nothing serves it"}},
		{"networks without a driver", vol(false, false), net(false, false), Docker{Reachable: true, NetNetworks: 1},
			want{OK, "not installed"}, want{Warn, "not installed"}},
		{"volumes without a driver", vol(false, false), net(false, false), Docker{Reachable: true, BlockVolumes: 1},
			want{Warn, "not installed"}, want{OK, "not installed"}},
		{"docker unreachable", vol(true, true), net(true, true), Docker{BlockVolumes: -1, NetNetworks: -1},
			want{OK, "serving " + vsock}, want{OK, "serving " + nsock}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := pluginLines(Facts{Plugin: tc.vol, NetworkPlugin: tc.net, Docker: tc.d})
			if len(lines) != 2 || lines[0].ID != "plugins.volume" || lines[1].ID != "plugins.network" {
				t.Fatalf("lines: %+v", lines)
			}
			for i, w := range []want{tc.vw, tc.nw} {
				l := lines[i]
				if l.Status != w.status || !strings.Contains(l.Value, w.value) || (l.Status == Warn) != (l.Remedy != "") {
					t.Errorf("got %+v, want %s %q", l, w.status, w.value)
				}
				if !tc.d.Reachable && strings.Contains(l.Value, "Docker has") {
					t.Errorf("counts reported without Docker: %+v", l)
				}
			}
		})
	}
}
