package pluginbundle

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// config.json decodes as Docker decodes it, and declares what the driver needs.
func TestConfig(t *testing.T) {
	data, err := json.Marshal(Config())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"Types":["docker.volumedriver/1.0"]`) {
		t.Errorf("interface types not as Docker writes them: %s", data)
	}
	var c types.PluginConfig
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"interface", c.Interface.Types[0].String(), "docker.volumedriver/1.0"},
		{"socket", c.Interface.Socket, "kata-block.sock"},
		{"propagated mount", c.PropagatedMount, "/var/lib/kata-deploy/plugins/block"},
		{"entrypoint", strings.Join(c.Entrypoint, " "), "/kata-plugins --volume-name kata-block --state-dir /var/lib/kata-deploy/plugins/block --socket-dir /run/docker/plugins --network-name= --host-state-dir auto"},
		{"capabilities", strings.Join(c.Linux.Capabilities, ","), "CAP_SYS_ADMIN"},
		{"all devices", c.Linux.AllowAllDevices, true},
		{"dev mount", *c.Mounts[0].Source + " " + c.Mounts[0].Destination, "/dev /dev"},
		// The host's records at the path the runtime reads, writable.
		{"direct-volume mount", *c.Mounts[1].Source + " " + c.Mounts[1].Destination + " " + strings.Join(c.Mounts[1].Options, ","),
			"/run/kata-containers/shared/direct-volumes /run/kata-containers/shared/direct-volumes rbind,rw"},
		{"PATH", c.Env[0].Name, "PATH"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if !strings.Contains(c.Description, "/run/kata-containers/shared/direct-volumes, which must exist") {
		t.Error("the description does not say the host's direct-volume directory must exist")
	}
}

// staticBinary builds a trivial static program.
func staticBinary(t *testing.T) string {
	t.Helper()
	testreq.Command(t, "go")
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kata-plugins")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestBuild(t *testing.T) {
	mkfs := testreq.Command(t, "mkfs.ext4")
	out := filepath.Join(t.TempDir(), "bundle")
	tools := []Tool{{"mkfs.ext4", "e2fsprogs"}}
	if err := Build(Options{Plugins: staticBinary(t), OutDir: out, Tools: tools}); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(out, "rootfs")
	for _, p := range []string{"/kata-plugins", mkfs, "/lib64/ld-linux-x86-64.so.2", StateDir, "/run/docker/plugins", "/run/kata-containers/shared/direct-volumes", "/dev"} {
		if _, err := os.Stat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("rootfs lacks %s: %v", p, err)
		}
	}
	libs, _ := filepath.Glob(filepath.Join(rootfs, "*/x86_64-linux-gnu/libext2fs.so.*"))
	if len(libs) == 0 {
		t.Error("rootfs lacks mkfs.ext4's libext2fs")
	}
	var c types.PluginConfig
	if data, err := os.ReadFile(filepath.Join(out, "config.json")); err != nil || json.Unmarshal(data, &c) != nil || c.Interface.Socket != Socket {
		t.Errorf("config.json: %v %+v", err, c.Interface)
	}
	if _, err := os.Stat(out + ".partial"); !os.IsNotExist(err) {
		t.Error("the staging directory is left")
	}
	// The copied tool runs in the rootfs alone: its libraries are all there.
	if os.Geteuid() == 0 {
		if o, err := exec.Command("chroot", rootfs, mkfs, "-V").CombinedOutput(); err != nil {
			t.Errorf("mkfs.ext4 in the rootfs: %v\n%s", err, o)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	sh := testreq.Command(t, "sh")
	for _, tc := range []struct {
		name    string
		plugins string
		tools   []Tool
		want    string
	}{
		{"dynamic plugins", sh, []Tool{}, "dynamically linked"},
		{"not an ELF", "/etc/hostname", []Tool{}, "CGO_ENABLED=0"},
		{"missing tool", "", []Tool{{"mkfs.nothing", "nothing-tools"}}, "apt-get install nothing-tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plugins := tc.plugins
			if plugins == "" {
				plugins = staticBinary(t)
			}
			out := filepath.Join(t.TempDir(), "bundle")
			err := Build(Options{Plugins: plugins, OutDir: out, Tools: tc.tools})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want %q", err, tc.want)
			}
			left, _ := filepath.Glob(out + "*")
			if len(left) > 0 || slices.Contains(left, out) {
				t.Errorf("a refused build left %v", left)
			}
		})
	}
}

// An output directory holding anything but an earlier bundle is refused and left as it is.
func TestBuildRefusesForeignOutDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dist")
	if err := os.MkdirAll(filepath.Join(out, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(out, "kata-deploy.deb")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(Options{Plugins: staticBinary(t), OutDir: out + "/", Tools: []Tool{}})
	if err == nil || !strings.Contains(err.Error(), "not only a plugin bundle") {
		t.Fatalf("Build: %v, want a refusal", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the refused build touched %s: %v", keep, err)
	}
	if left, _ := filepath.Glob(out + ".partial*"); len(left) > 0 {
		t.Errorf("a refused build left %v", left)
	}
}
