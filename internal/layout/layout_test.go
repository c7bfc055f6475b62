package layout

import (
	"reflect"
	"testing"
)

func TestPaths(t *testing.T) {
	versioned := Layout{Prefix: "/p", Version: "v1"}
	flat := Layout{Prefix: "/p"}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"versioned root", versioned.Root(), "/p/versions/v1"},
		{"versioned bin", versioned.Bin(), "/p/versions/v1/bin"},
		{"versioned shim", versioned.Shim(), "/p/versions/v1/bin/containerd-shim-kata-v2"},
		{"versioned share", versioned.Share(), "/p/versions/v1/share"},
		{"versioned image dir", versioned.ImageDir(), "/p/versions/v1/share/kata-deploy"},
		{"versioned vmlinux", versioned.Vmlinux(), "/p/versions/v1/share/kata-deploy/vmlinux"},
		{"versioned initrd", versioned.Initrd(), "/p/versions/v1/share/kata-deploy/initrd.img"},
		{"versioned image manifest", versioned.ImageManifest(), "/p/versions/v1/share/kata-deploy/image-manifest.json"},
		{"versioned staging", versioned.Staging(), "/p/versions/v1/share/kata-deploy/.build"},
		{"versioned defaults", versioned.DefaultsDir(), "/p/versions/v1/share/defaults"},
		{"versioned config", versioned.Config(), "/p/versions/v1/share/defaults/configuration-qemu.toml"},
		{"versions dir", versioned.VersionsDir(), "/p/versions"},
		{"current link", versioned.CurrentLink(), "/p/current"},
		{"versioned entry shim", versioned.EntryShim(), "/p/current/bin/containerd-shim-kata-v2"},
		{"versioned entry config", versioned.EntryConfig(), "/p/current/share/defaults/configuration-qemu.toml"},
		{"flat root", flat.Root(), "/p"},
		{"flat shim", flat.Shim(), "/p/bin/containerd-shim-kata-v2"},
		{"flat config", flat.Config(), "/p/share/defaults/configuration-qemu.toml"},
		{"flat entry shim", flat.EntryShim(), "/p/bin/containerd-shim-kata-v2"},
		{"flat entry config", flat.EntryConfig(), "/p/share/defaults/configuration-qemu.toml"},
		{"current vmlinux", Current("/p").Vmlinux(), "/p/current/share/kata-deploy/vmlinux"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}

func TestDirs(t *testing.T) {
	for _, tc := range []struct {
		l    Layout
		want []string
	}{
		{Layout{Prefix: "/p"}, []string{"/p", "/p/bin", "/p/share", "/p/share/kata-deploy", "/p/share/defaults"}},
		{Layout{Prefix: "/p", Version: "v"}, []string{"/p", "/p/versions", "/p/versions/v", "/p/versions/v/bin",
			"/p/versions/v/share", "/p/versions/v/share/kata-deploy", "/p/versions/v/share/defaults"}},
	} {
		if got := tc.l.Dirs(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: got %q, want %q", tc.l, got, tc.want)
		}
	}
}

// The constant defaults must name the same files as the default install's current tree.
func TestDefaults(t *testing.T) {
	cur := Current(DefaultPrefix)
	for _, tc := range []struct{ name, constant, want string }{
		{"config", DefaultConfigPath, cur.Config()},
		{"vmlinux", DefaultVmlinux, cur.Vmlinux()},
		{"initrd", DefaultInitrd, cur.Initrd()},
		{"entry config", DefaultConfigPath, Layout{Prefix: DefaultPrefix, Version: "x"}.EntryConfig()},
	} {
		if tc.constant != tc.want {
			t.Errorf("%s: constant %s, layout %s", tc.name, tc.constant, tc.want)
		}
	}
}
