package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/internal/directvolume"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/packaging/pluginbundle"
)

// bundlePlugin is the managed plugin the test creates: a name of its own, removed at the end.
const bundlePlugin = "kata-deploy/kata-block-e2e:latest"

// The bundle of `make plugin-bundle` is accepted by `docker plugin create` offline; enabled, it
// serves volumes: one is created, written and read by a runc container through the plugin's loop
// mount; a kata container gets it as a virtio-blk disk (the plugin's record, in the host's
// direct-volume directory, names the host's paths of its propagated mount), and what the VM wrote
// a runc container reads afterwards; then everything is removed again.
func TestPluginBundle(t *testing.T) {
	requireKata(t)
	testreq.Commands(t, "mkfs.ext4", "e2fsck", "mount")
	// The bundle binds the host's direct-volume directory into the plugin: it must exist.
	if err := os.MkdirAll(directvolume.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(binDir, "static", "kata-plugins")
	cmd := exec.Command("go", "build", "-trimpath", "-o", static, "github.com/kata-deploy/kata-deploy/cmd/kata-plugins")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a static kata-plugins: %v\n%s", err, out)
	}
	bundle := filepath.Join(t.TempDir(), "plugin-bundle")
	if err := pluginbundle.Build(pluginbundle.Options{Plugins: static, OutDir: bundle}); err != nil {
		missing(t, err.Error()) // a tool the bundle copies is not installed here
	}
	records := func() []string {
		entries, _ := os.ReadDir(directvolume.Root)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	recordsBefore := records()
	volume := "kp-bundle-vol"
	t.Cleanup(func() {
		_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
		_ = exec.Command("docker", "plugin", "disable", "-f", bundlePlugin).Run()
		_ = exec.Command("docker", "plugin", "rm", "-f", bundlePlugin).Run()
	})

	for _, args := range [][]string{
		{"plugin", "create", bundlePlugin, bundle},
		{"plugin", "enable", bundlePlugin},
		{"volume", "create", "-d", bundlePlugin, "-o", "size=64M", volume},
	} {
		if out := docker(t, "", args...); out.code != 0 {
			t.Fatalf("docker %s: exit %d\n%s%s", strings.Join(args, " "), out.code, out.stdout, out.stderr)
		}
	}
	if out := docker(t, "", "volume", "inspect", "-f", "{{.Driver}}", volume); strings.TrimSpace(out.stdout) != bundlePlugin {
		t.Errorf("volume driver %q, want %s", out.stdout, bundlePlugin)
	}
	out := docker(t, "", "run", "--rm", "--runtime=runc", "-v", volume+":/data", "busybox", "sh", "-c", "echo from-bundle > /data/f && cat /data/f")
	if out.code != 0 || strings.TrimSpace(out.stdout) != "from-bundle" {
		t.Errorf("a runc container on the bundle's volume: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
	out = docker(t, "", "run", "--rm", "--runtime=kata", "-v", volume+":/data", "busybox", "sh", "-c",
		"cat /data/f && echo from-kata > /data/f && grep ' /data ' /proc/mounts")
	if lines := strings.Split(out.stdout, "\n"); out.code != 0 || lines[0] != "from-bundle" || len(lines) < 2 || !strings.HasPrefix(lines[1], "/dev/vd") {
		t.Errorf("a kata container on the bundle's volume: exit %d, want the runc write read and /data on a /dev/vd* disk\n%s%s", out.code, out.stdout, out.stderr)
	}
	t.Logf("kata container: %s", strings.ReplaceAll(strings.TrimSpace(out.stdout), "\n", " | "))
	out = docker(t, "", "run", "--rm", "--runtime=runc", "-v", volume+":/data", "busybox", "cat", "/data/f")
	if out.code != 0 || strings.TrimSpace(out.stdout) != "from-kata" {
		t.Errorf("a runc container after the kata one: exit %d, want what the VM wrote\n%s%s", out.code, out.stdout, out.stderr)
	}

	for _, args := range [][]string{
		{"volume", "rm", volume},
		{"plugin", "disable", bundlePlugin},
		{"plugin", "rm", bundlePlugin},
	} {
		if out := docker(t, "", args...); out.code != 0 {
			t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), out.code, out.stderr)
		}
	}
	if got := records(); !slices.Equal(got, recordsBefore) {
		t.Errorf("direct-volume records left: %v, before the test %v", got, recordsBefore)
	}
	if out := docker(t, "", "plugin", "ls", "--format", "{{.Name}}"); strings.Contains(out.stdout, "kata-block-e2e") {
		t.Errorf("the plugin is still listed:\n%s", out.stdout)
	}
}
