package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

func TestNetworkNamespace(t *testing.T) {
	tests := []struct {
		name    string
		linux   *specs.Linux
		want    string
		wantErr string
	}{
		{"new netns", &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}}}, "", ""},
		{"given netns path", &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}}, "/var/run/netns/x", ""},
		{"host network refused", &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}, "", "--network host"},
		{"no linux section refused", nil, "", "--network host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := networkNamespace(&specs.Spec{Linux: tt.linux})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestStateDirRejectsBadIDs(t *testing.T) {
	cfg := config.Default()
	for _, id := range []string{"", "../etc", "a/b", ".hidden", strings.Repeat("a", 65), "x y"} {
		if _, err := StateDir(cfg, id); err == nil {
			t.Errorf("StateDir(%q) accepted a bad id", id)
		}
	}
	id := strings.Repeat("0123456789abcdef", 4)
	if dir, err := StateDir(cfg, id); err != nil || dir != filepath.Join(cfg.Runtime.StateDir, id) {
		t.Errorf("StateDir(64 hex) = %q, %v", dir, err)
	}
}

func TestIsBind(t *testing.T) {
	for _, tt := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
		{specs.Mount{Type: "proc"}, false},
	} {
		if got := isBind(tt.m); got != tt.want {
			t.Errorf("isBind(%+v) = %v, want %v", tt.m, got, tt.want)
		}
	}
}

// TestShareAndUnshare mounts for real: the guest spec points into the share, the host sees the
// bind mounts, and unshare removes every mount and the directory without touching the sources.
func TestShareAndUnshare(t *testing.T) {
	testreq.Root(t) // bind mounts
	src := t.TempDir()
	rootfs := filepath.Join(src, "rootfs")
	os.Mkdir(rootfs, 0o755)
	os.WriteFile(filepath.Join(rootfs, "marker"), []byte("root"), 0o644)
	hosts := filepath.Join(src, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644)
	vol := filepath.Join(src, "vol")
	os.Mkdir(vol, 0o755)
	spec := &specs.Spec{
		Root: &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"rbind", "rprivate"}},
			{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind"}},
		},
	}
	dir := filepath.Join(t.TempDir(), "shared")
	s, guest, err := share(dir, dir+".list", spec)
	if err != nil {
		t.Fatal(err)
	}
	if guest.Root.Path != agentproto.SharedGuestDir+"/rootfs" || guest.Mounts[0].Source != "proc" ||
		guest.Mounts[1].Source != agentproto.SharedGuestDir+"/m1" || guest.Mounts[2].Source != agentproto.SharedGuestDir+"/m2" {
		t.Errorf("guest spec: root %q, mounts %+v", guest.Root.Path, guest.Mounts)
	}
	if spec.Root.Path != rootfs || spec.Mounts[1].Source != hosts {
		t.Error("share changed the caller's spec")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "rootfs", "marker")); string(data) != "root" {
		t.Errorf("rootfs not visible in the share: %q", data)
	}
	// Live: a rewrite of the host file in place shows through the share.
	os.WriteFile(hosts, []byte("10.0.0.1 changed\n"), 0o644)
	if data, _ := os.ReadFile(filepath.Join(dir, "m1")); string(data) != "10.0.0.1 changed\n" {
		t.Errorf("hosts file is not shared live: %q", data)
	}
	if err := s.unshare(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("shared dir still there: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, "marker")); string(data) != "root" {
		t.Error("unshare touched the source rootfs")
	}
}

// TestRemoveShallowNeverDeletesThroughAMount: should a bind mount still be in place, removal fails
// instead of deleting the user's files through it.
func TestRemoveShallowNeverDeletesThroughAMount(t *testing.T) {
	testreq.Root(t) // bind mounts
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "precious"), []byte("data"), 0o644)
	dir := t.TempDir()
	target := filepath.Join(dir, "m0")
	os.Mkdir(target, 0o700)
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	if err := removeShallow(dir); err == nil {
		t.Error("removeShallow succeeded over a live mount")
	}
	if _, err := os.Stat(filepath.Join(src, "precious")); err != nil {
		t.Errorf("the user's file is gone: %v", err)
	}
}

func TestMissingRootfs(t *testing.T) {
	if _, _, err := share(t.TempDir(), "", &specs.Spec{}); err == nil || !strings.Contains(err.Error(), "root.path") {
		t.Errorf("err = %v", err)
	}
}

// The agent is told to preload the shared file system's modules and the network's.
func TestPreloadParam(t *testing.T) {
	for _, tc := range []struct{ sharedFS, want string }{
		{"virtio-9p", "agent.modules=9p,net"},
		{"virtio-fs", "agent.modules=virtiofs,net"},
	} {
		cfg := config.Default()
		cfg.Hypervisor.SharedFS = tc.sharedFS
		if got := preloadParam(cfg); got != tc.want {
			t.Errorf("shared_fs %s: %q, want %q", tc.sharedFS, got, tc.want)
		}
		if !slices.Contains(kernelParams(cfg), tc.want) {
			t.Errorf("shared_fs %s: the kernel parameters %q lack %q", tc.sharedFS, kernelParams(cfg), tc.want)
		}
	}
}
