package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/plugin"
)

const testNetDriver = "kata-net-e2e"

// netPlugin is kata-plugins serving the network driver (and a volume driver nobody uses).
type netPlugin struct {
	cmd *exec.Cmd
	dir string
}

// startNetPlugin serves the network driver with its state in dir, in the test engine's network
// namespace (where dockerd looks for the links it moves into containers).
func startNetPlugin(t *testing.T, dir string) *netPlugin {
	t.Helper()
	args := []string{pluginBinary(t), "--volume-name", testNetDriver + "-vol", "--state-dir", filepath.Join(dir, "vol"),
		"--network-name", testNetDriver, "--network-state-dir", filepath.Join(dir, "net")}
	if ns := os.Getenv("KATA_TEST_ENGINE_NETNS"); ns != "" {
		args = append([]string{"nsenter", "--net=" + ns, "--"}, args...)
	}
	log, err := os.OpenFile(filepath.Join(dir, "plugin.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	p := &netPlugin{cmd: exec.Command(args[0], args[1:]...), dir: dir}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sock := plugin.SocketPath(plugin.DefaultSocketDir, testNetDriver)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			p.stop()
			b, _ := os.ReadFile(filepath.Join(dir, "plugin.log"))
			t.Fatalf("kata-plugins did not create %s:\n%s", sock, b)
		}
	}
}

func (p *netPlugin) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
}

// inEngineNS runs a command in the test engine's network namespace and returns its output.
func inEngineNS(t *testing.T, args ...string) string {
	t.Helper()
	if ns := os.Getenv("KATA_TEST_ENGINE_NETNS"); ns != "" {
		args = append([]string{"nsenter", "--net=" + ns, "--"}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// driverLinks lists the links of the driver in the engine's namespace.
func driverLinks(t *testing.T) string {
	t.Helper()
	out := inEngineNS(t, "ip", "-o", "link", "show")
	var found []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (strings.HasPrefix(f[1], "kn-") || strings.HasPrefix(f[1], "knh")) {
			found = append(found, strings.TrimSuffix(f[1], ":"))
		}
	}
	return strings.Join(found, " ")
}

// bridgePorts lists the ports of bridge in the engine's namespace.
func bridgePorts(t *testing.T, bridge string) string {
	t.Helper()
	out := inEngineNS(t, "ip", "-o", "link", "show", "master", bridge)
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return strings.Join(names, " ")
}

// TestNetPlugin: on a kata-net network two kata containers reach each other by name, a runc
// container reaches a kata one, a running kata container connected later joins them, published
// ports are refused with the reason, the network survives a restart of the plugin, and removing
// it leaves no link behind.
func TestNetPlugin(t *testing.T) {
	requireKata(t)
	dir := t.TempDir()
	// A bridge of the same prefix that this driver did not make (another instance's) survives its
	// start, which removes only its own orphans.
	foreign := "kn-0e2e0e2e0e2e"
	inEngineNS(t, "ip", "link", "add", foreign, "type", "bridge")
	p := startNetPlugin(t, dir)
	kept := strings.Contains(inEngineNS(t, "ip", "-o", "link", "show"), foreign)
	if kept {
		inEngineNS(t, "ip", "link", "del", foreign)
	} else {
		t.Errorf("the plugin's start removed %s, a bridge it did not make", foreign)
	}
	defer func() { p.stop() }()
	netName := fmt.Sprintf("knet-%d", time.Now().UnixNano()%1e9)
	if res := docker(t, "", "network", "create", "-d", testNetDriver, netName); res.code != 0 {
		t.Fatalf("docker network create: %s", res.stderr)
	}
	defer docker(t, "", "network", "rm", netName)
	srv := netName + "-srv"
	detached(t, srv, "kata", "--network", netName, "busybox", "sleep", "600")

	ping := "ping -c 1 -W 5 " + srv

	// The kata container's VM has a tap of its own on the network's bridge (the bridged wiring).
	id := strings.TrimSpace(docker(t, "", "network", "inspect", "-f", "{{.Id}}", netName).stdout)
	if ports := bridgePorts(t, "kn-"+id[:12]); !strings.Contains(ports, "kt") {
		t.Errorf("ports of the network's bridge: %q, want the VM's tap (kt...)", ports)
	}
	// A hostile guest (root in a privileged container) that claims another address of the
	// network is cut off by the tap's anti-spoofing filters; its own address works.
	// The claimed address is in the network's subnet, so that without the filters the answer
	// would come back.
	subnet := strings.TrimSpace(docker(t, "", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", netName).stdout)
	base, _, err := net.ParseCIDR(subnet)
	if err != nil || base.To4() == nil {
		t.Fatalf("subnet of %s: %q", netName, subnet)
	}
	other := base.To4()
	other[3] = 250
	spoof := "ip addr show eth0 | grep -o 'inet [0-9.]*' | head -1 | cut -d' ' -f2 > /tmp/own; ip addr add " + other.String() + "/32 dev eth0; " +
		"ping -c 1 -W 5 -I $(cat /tmp/own) " + srv + " >/dev/null && echo own=ok || echo own=fail; " +
		"ping -c 2 -W 3 -I " + other.String() + " " + srv + " >/dev/null && echo spoofed=ok || echo spoofed=blocked"
	if res := runIn(t, "kata", "--network", netName, "--privileged", "busybox", "sh", "-c", spoof); !strings.Contains(res.stdout, "own=ok") || !strings.Contains(res.stdout, "spoofed=blocked") {
		t.Errorf("anti-spoofing on the bridged tap: %q %q, want own=ok spoofed=blocked", res.stdout, res.stderr)
	}
	for _, rt := range []string{"kata", "runc"} {
		if res := runIn(t, rt, "--network", netName, "busybox", "sh", "-c", ping); res.code != 0 {
			t.Errorf("%s container pinging %s by name: exit %d: %s %s", rt, srv, res.code, res.stdout, res.stderr)
		}
	}

	late := netName + "-late"
	detached(t, late, "kata", "busybox", "sleep", "600")
	if res := docker(t, "", "network", "connect", netName, late); res.code != 0 {
		t.Fatalf("docker network connect: %s", res.stderr)
	}
	var res result
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if res = docker(t, "", "exec", late, "sh", "-c", ping); res.code == 0 {
			break
		}
	}
	if res.code != 0 {
		t.Errorf("a kata container connected later cannot reach %s: %s %s", srv, res.stdout, res.stderr)
	}

	if res := runIn(t, "kata", "--network", netName, "-p", "18080:80", "busybox", "true"); res.code == 0 || !strings.Contains(res.stderr, "publish") {
		t.Errorf("a published port on kata-net: exit %d, %q; want a refusal naming the reason", res.code, res.stderr)
	}

	p.stop()
	p = startNetPlugin(t, dir)
	if res := runIn(t, "runc", "--network", netName, "busybox", "sh", "-c", ping); res.code != 0 {
		t.Errorf("after a restart of the plugin: %s %s", res.stdout, res.stderr)
	}

	docker(t, "", "rm", "-f", srv, late)
	if res := docker(t, "", "network", "rm", netName); res.code != 0 {
		t.Fatalf("docker network rm: %s", res.stderr)
	}
	if left := driverLinks(t); left != "" {
		t.Errorf("links left after the network was removed: %s", left)
	}
	if out := inEngineNS(t, "iptables", "-w", "-S"); strings.Contains(out, "KATA-NET") || strings.Contains(out, "kn-"+id[:12]) {
		t.Errorf("firewall rules left after the network was removed:\n%s", out)
	}
	if out := inEngineNS(t, "iptables", "-w", "-t", "nat", "-S"); strings.Contains(out, "kn-"+id[:12]) {
		t.Errorf("nat rules left after the network was removed:\n%s", out)
	}
}
