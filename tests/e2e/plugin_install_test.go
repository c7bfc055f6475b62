package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
)

// installPluginName is the driver the test installs: its own name beside the host's kata-block
// (and volume_test.go's driver), so that nothing of the host's is touched.
const (
	installPluginName  = "kata-block-inst-e2e"
	installNetworkName = "kata-net-inst-e2e"
)

// install --with-plugins on the test engine: the drivers serve (sockets 0660), a volume of it
// works from a kata container, a network of it connects a kata and a runc container; uninstall is
// refused while the volume or the network exists and changes nothing, then, after docker volume rm
// and docker network rm, leaves no socket, process, link or file.
func TestInstallWithPlugins(t *testing.T) {
	e := requireInstall(t)
	testreq.Commands(t, "mkfs.ext4", "e2fsck", "mount")
	buildArtifact(t, e.artifacts, pluginsvc.BinaryName, "github.com/kata-deploy/kata-deploy/cmd/kata-plugins")
	dir := t.TempDir()
	prefix, state, netState := filepath.Join(dir, "kata-deploy"), filepath.Join(dir, "state"), filepath.Join(dir, "net")
	socket := filepath.Join(pluginsvc.DefaultSocketDir, installPluginName+".sock")
	netSocket := filepath.Join(pluginsvc.DefaultSocketDir, installNetworkName+".sock")
	volume, network := "kp-e2e-vol", "kp-e2e-net"
	args := e.args(prefix, "--with-plugins", "--plugin-name", installPluginName, "--plugin-state-dir", state,
		"--plugin-network-name", installNetworkName, "--plugin-network-state-dir", netState)
	original := e.daemonJSONBytes(t)
	t.Cleanup(func() {
		if t.Failed() {
			_ = exec.Command("docker", "network", "rm", network).Run()
		}
		cleanUpPluginInstall(t, prefix, volume, state)
	})

	res := kataDeploy(t, append([]string{"install", "-o", "json"}, args...)...)
	if res.code != 0 {
		t.Fatalf("install --with-plugins: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	var r install.Result
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || r.Plugin == nil || !r.Plugin.Started || r.Plugin.Socket != socket {
		t.Fatalf("install result: %v %+v\n%s", err, r.Plugin, res.stdout)
	}
	for _, sock := range []string{socket, netSocket} {
		if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Fatalf("socket %s: %v %v", sock, fi, err)
		}
	}
	s := pluginStatus(t, prefix)
	if !s.Running || !s.SocketReachable || s.Volumes == nil || *s.Volumes != 0 || !s.NetworkSocketReachable || s.Networks == nil || *s.Networks != 0 {
		t.Fatalf("status: %+v", s)
	}
	pid := s.PID

	if out := docker(t, "", "volume", "create", "-d", installPluginName, "-o", "size=64M", volume); out.code != 0 {
		t.Fatalf("docker volume create: %s", out.stderr)
	}
	out := docker(t, "", "run", "--rm", "--runtime="+installRuntime, "-v", volume+":/data", "busybox",
		"sh", "-c", "echo from-kata > /data/f && cat /data/f && grep ' /data ' /proc/mounts")
	if out.code != 0 || !strings.HasPrefix(out.stdout, "from-kata\n") || !strings.Contains(out.stdout, "/dev/vd") {
		t.Fatalf("kata container with the volume: exit %d\n%s\n%s", out.code, out.stdout, out.stderr)
	}
	if s := pluginStatus(t, prefix); s.Volumes == nil || *s.Volumes != 1 {
		t.Errorf("status counts %v volumes, want 1", s.Volumes)
	}

	if out := docker(t, "", "network", "create", "-d", installNetworkName, network); out.code != 0 {
		t.Fatalf("docker network create: %s", out.stderr)
	}
	checkPlugins(t, socket, netSocket)
	srv := network + "-srv"
	detached(t, srv, installRuntime, "--network", network, "busybox", "sleep", "600")
	if out := docker(t, "", "run", "--rm", "--runtime=runc", "--network", network, "busybox", "ping", "-c", "1", "-W", "5", srv); out.code != 0 {
		t.Errorf("a runc container pinging the kata one on the plugin's network: %s %s", out.stdout, out.stderr)
	}
	docker(t, "", "rm", "-f", srv)

	// Refused while the volume exists: nothing changes.
	before, manifestBefore := e.daemonJSONBytes(t), readFile(t, filepath.Join(prefix, "manifest.json"))
	un := kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 1 || !strings.Contains(un.stderr, volume) || !strings.Contains(un.stderr, "docker volume rm") {
		t.Fatalf("uninstall with a volume left: exit %d\n%s\n%s", un.code, un.stdout, un.stderr)
	}
	if !bytes.Equal(e.daemonJSONBytes(t), before) || !bytes.Equal(readFile(t, filepath.Join(prefix, "manifest.json")), manifestBefore) {
		t.Error("the refused uninstall changed daemon.json or the manifest")
	}
	if s := pluginStatus(t, prefix); !s.Running || !s.SocketReachable || s.PID != pid {
		t.Errorf("the refused uninstall touched the plugin: %+v", s)
	}

	if out := docker(t, "", "volume", "rm", volume); out.code != 0 {
		t.Fatalf("docker volume rm: %s", out.stderr)
	}
	// Still refused while the network exists.
	un = kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 1 || !strings.Contains(un.stderr, network) || !strings.Contains(un.stderr, "docker network rm") {
		t.Fatalf("uninstall with a network left: exit %d\n%s\n%s", un.code, un.stdout, un.stderr)
	}
	if out := docker(t, "", "network", "rm", network); out.code != 0 {
		t.Fatalf("docker network rm: %s", out.stderr)
	}
	un = kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", un.code, un.stdout, un.stderr)
	}
	e.checkRestored(t, original)
	for _, p := range []string{socket, netSocket, prefix, state, netState} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left: %v", p, err)
		}
	}
	if pluginRuns(pid) {
		t.Errorf("the plugin process %d still runs", pid)
	}
	if left := driverLinks(t); left != "" {
		t.Errorf("network links left: %s", left)
	}
}

// checkPlugins asserts that `kata-deploy check` (JSON and text) reports both drivers serving and
// Docker's one volume and one network of them.
func checkPlugins(t *testing.T, socket, netSocket string) {
	t.Helper()
	names := []string{"--plugin-name", installPluginName, "--plugin-network-name", installNetworkName}
	res := kataDeploy(t, append([]string{"check", "-o", "json"}, names...)...)
	var rep check.Report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("check -o json: exit %d, %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if rep.Docker.BlockVolumes != 1 || rep.Docker.NetNetworks != 1 {
		t.Errorf("check counts %d volumes and %d networks, want 1 and 1", rep.Docker.BlockVolumes, rep.Docker.NetNetworks)
	}
	for id, want := range map[string]string{
		"plugins.volume":  "serving " + socket + "; Docker has 1 volume(s) of it",
		"plugins.network": "serving " + netSocket + "; Docker has 1 network(s) of it",
	} {
		if l, ok := rep.Line(id); !ok || l.Status != check.OK || l.Value != want {
			t.Errorf("check line %s: %+v, want ok %q", id, l, want)
		}
	}
	text := kataDeploy(t, append([]string{"check"}, names...)...)
	if !strings.Contains(text.stdout, installNetworkName+" network plugin") || !strings.Contains(text.stdout, "Docker has 1 network(s) of it") {
		t.Errorf("check's text does not report the network driver:\n%s", text.stdout)
	}
}

// pluginRuns reports whether pid is a kata-plugins process that has not exited (a zombie waiting
// for its new parent to reap it has).
func pluginRuns(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil || !strings.Contains(string(stat), "("+pluginsvc.BinaryName+")") {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// pluginStatus is the plugin part of `kata-deploy status -o json`.
func pluginStatus(t *testing.T, prefix string) install.PluginStatus {
	t.Helper()
	st := kataDeploy(t, "status", "-o", "json", "--prefix", prefix)
	var s install.Status
	if err := json.Unmarshal([]byte(st.stdout), &s); err != nil || s.Plugin == nil {
		t.Fatalf("status: exit %d, %v\n%s\n%s", st.code, err, st.stdout, st.stderr)
	}
	return *s.Plugin
}

// buildArtifact builds a binary into the artifacts directory once.
func buildArtifact(t *testing.T, dir, name, pkg string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return
	}
	if out, err := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, name), pkg).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
}

// cleanUpPluginInstall removes what a failed test left: the volume, the install (forced), any
// loop mount under the state directory.
func cleanUpPluginInstall(t *testing.T, prefix, volume, state string) {
	if !t.Failed() {
		return
	}
	_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
	if _, err := os.Stat(prefix); err == nil {
		if res := kataDeploy(t, "uninstall", "--force", "--prefix", prefix); res.code != 0 {
			t.Logf("cleanup: uninstall --force: %s", res.stderr)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(state, "*", "mnt"))
	for _, m := range matches {
		_ = exec.Command("umount", m).Run()
	}
	_ = os.RemoveAll(state)
}
