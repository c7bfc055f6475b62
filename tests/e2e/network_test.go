package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// Networking of kata containers: published ports, user-defined networks and their DNS, kata and
// runc side by side, several networks, network connect/disconnect on a running container,
// --network none and host. Only loopback and addresses inside the networks the tests create are
// ever contacted.

// netName returns a unique name for a test's container or network.
func netName(t *testing.T, what string) string {
	t.Helper()
	return fmt.Sprintf("kn-%s-%s-%d", what, strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), time.Now().UnixNano()%1e6)
}

// userNetwork creates a bridge network, removed when the test ends.
func userNetwork(t *testing.T) string {
	t.Helper()
	name := netName(t, "net")
	if res := docker(t, "", "network", "create", name); res.code != 0 {
		t.Fatalf("docker network create: %s", res.stderr)
	}
	t.Cleanup(func() { docker(t, "", "network", "rm", name) })
	return name
}

// detached starts a container with docker run -d and removes it when the test ends.
func detached(t *testing.T, name, runtime string, args ...string) {
	t.Helper()
	t.Cleanup(func() { docker(t, "", "rm", "-f", name) })
	full := append([]string{"run", "-d", "--name", name, "--runtime=" + runtime}, args...)
	if res := docker(t, "", full...); res.code != 0 {
		t.Fatalf("docker run -d %v: %s", args, res.stderr)
	}
}

// webRoot is a directory with one file of random content for busybox httpd to serve.
func webRoot(t *testing.T) (dir, content string) {
	t.Helper()
	dir = t.TempDir()
	b := make([]byte, 16)
	rand.Read(b)
	content = "kata-net-" + hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return dir, content
}

// httpServer runs busybox httpd serving a fresh web root; extra are docker run options.
func httpServer(t *testing.T, name, runtime string, extra ...string) (content string) {
	t.Helper()
	dir, content := webRoot(t)
	args := append(append([]string{"-v", dir + ":/www:ro"}, extra...), "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	detached(t, name, runtime, args...)
	return content
}

// fetchFrom runs a short-lived container that fetches http://<host>/f.txt, retrying while the
// server boots, and returns what it printed.
func fetchFrom(t *testing.T, runtime, host string, extra ...string) result {
	t.Helper()
	script := fmt.Sprintf(`i=0; while [ $i -lt 120 ]; do if timeout 5 wget -q -O - http://%s/f.txt; then exit 0; fi; i=$((i+1)); sleep 0.5; done; exit 1`, host)
	args := append(append([]string{"run", "--rm", "--runtime=" + runtime}, extra...), "busybox", "sh", "-c", script)
	return docker(t, "", args...)
}

// freePort returns a loopback TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet fetches url until it answers 200 or the deadline passes.
func httpGet(t *testing.T, url string, within time.Duration) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(body)
			}
			err = fmt.Errorf("HTTP %d, %v", resp.StatusCode, rerr)
		}
		lastErr = err
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("GET %s did not succeed within %s: %v", url, within, lastErr)
	return ""
}

func TestKataNetworkPublishedPort(t *testing.T) {
	requireKata(t)
	port := freePort(t)
	content := httpServer(t, netName(t, "web"), "kata", "-p", fmt.Sprintf("127.0.0.1:%d:80", port))
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/f.txt", port), 90*time.Second); got != content {
		t.Errorf("published port served %q, want %q", got, content)
	}
}

func TestKataNetworkDefaultBridge(t *testing.T) {
	requireKata(t)
	server := netName(t, "web")
	content := httpServer(t, server, "runc")
	ip := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", server).stdout)
	if net.ParseIP(ip) == nil {
		t.Fatalf("runc server has no address on the default bridge: %q", ip)
	}
	res := fetchFrom(t, "kata", ip)
	if res.code != 0 || res.stdout != content {
		t.Errorf("kata on the default bridge fetching from %s: exit %d, got %q (want %q), stderr %q", ip, res.code, res.stdout, content, res.stderr)
	}
}

func TestKataNetworkUserNetworkByName(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	server := netName(t, "web")
	content := httpServer(t, server, "kata", "--network", network)
	res := fetchFrom(t, "kata", server, "--network", network)
	if res.code != 0 || res.stdout != content {
		t.Fatalf("kata -> kata by name: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, content, res.stderr)
	}
	// ICMP and DNS through the relay, by name and by the network alias Docker registers.
	ping := docker(t, "", "run", "--rm", "--runtime=kata", "--network", network, "busybox", "sh", "-c",
		"ping -c 1 -W 5 "+server+" && nslookup "+server+" 127.0.0.11")
	if ping.code != 0 {
		t.Errorf("ping/nslookup %s from a kata container: exit %d, stdout %q, stderr %q", server, ping.code, ping.stdout, ping.stderr)
	}
}

func TestKataNetworkWithRunc(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	kataServer, runcServer := netName(t, "kataweb"), netName(t, "runcweb")
	kataContent := httpServer(t, kataServer, "kata", "--network", network)
	runcContent := httpServer(t, runcServer, "runc", "--network", network)
	if res := fetchFrom(t, "runc", kataServer, "--network", network); res.code != 0 || res.stdout != kataContent {
		t.Errorf("runc -> kata: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, kataContent, res.stderr)
	}
	if res := fetchFrom(t, "kata", runcServer, "--network", network); res.code != 0 || res.stdout != runcContent {
		t.Errorf("kata -> runc: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, runcContent, res.stderr)
	}
}

func TestKataNetworkNone(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--network", "none", "busybox", "sh", "-c",
		"ls /sys/class/net; ping -c 1 -W 5 127.0.0.1 >/dev/null && echo lo-ok")
	if res.code != 0 || res.stdout != "lo\nlo-ok\n" {
		t.Errorf("--network none: exit %d, stdout %q (want only lo, working), stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestKataNetworkHostRefused(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--network", "host", "busybox", "true")
	if res.code == 0 || !strings.Contains(res.stderr, "--network host") {
		t.Errorf("--network host: exit %d, stderr %q; want a failure that names --network host", res.code, res.stderr)
	}
}

// TestKataNetworkExternalNames: Docker's embedded DNS forwards names it does not know to the
// container's upstream servers from inside the container's namespace; the answers must reach it
// although the namespace's link is redirected to the VM. The "upstream" is a fake DNS server in a
// runc container on the test network that resolves every name to a web server on that network.
func TestKataNetworkExternalNames(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	server := netName(t, "web")
	content := httpServer(t, server, "runc", "--network", network)
	serverIP := containerIP(t, server, network)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "fakedns"), "./testdata/fakedns")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the fake DNS server: %v\n%s", err, out)
	}
	dns := netName(t, "dns")
	detached(t, dns, "runc", "--network", network, "-v", filepath.Join(dir, "fakedns")+":/fakedns:ro", "busybox", "/fakedns", "-answer", serverIP)
	res := fetchFrom(t, "kata", "outside.example.test", "--network", network, "--dns", containerIP(t, dns, network))
	if res.code != 0 || res.stdout != content {
		t.Errorf("kata fetching a name only the upstream DNS knows: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, content, res.stderr)
	}
}

// containerIP returns a container's address on a network.
func containerIP(t *testing.T, name, network string) string {
	t.Helper()
	ip := strings.TrimSpace(docker(t, "", "inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").IPAddress}}`, name).stdout)
	if net.ParseIP(ip) == nil {
		t.Fatalf("%s has no address on %s: %q", name, network, ip)
	}
	return ip
}

// TestKataNetworkIPv6: on a dual-stack network the guest gets the IPv6 address and default route
// too, and kata containers reach each other over IPv6.
func TestKataNetworkIPv6(t *testing.T) {
	requireKata(t)
	network := netName(t, "net6")
	subnet := fmt.Sprintf("fd00:db8:%x::/64", time.Now().UnixNano()&0xffff)
	if res := docker(t, "", "network", "create", "--ipv6", "--subnet", subnet, network); res.code != 0 {
		t.Fatalf("docker network create --ipv6: %s", res.stderr)
	}
	t.Cleanup(func() { docker(t, "", "network", "rm", network) })
	server := netName(t, "web")
	content := httpServer(t, server, "kata", "--network", network)
	ip6 := strings.TrimSpace(docker(t, "", "inspect", "-f", `{{(index .NetworkSettings.Networks "`+network+`").GlobalIPv6Address}}`, server).stdout)
	if net.ParseIP(ip6) == nil || net.ParseIP(ip6).To4() != nil {
		t.Fatalf("the server has no IPv6 address: %q", ip6)
	}
	if res := fetchFrom(t, "kata", "["+ip6+"]", "--network", network); res.code != 0 || res.stdout != content {
		t.Errorf("kata -> kata over IPv6 (%s): exit %d, got %q (want %q), stderr %q", ip6, res.code, res.stdout, content, res.stderr)
	}
}

// TestKataNetworkContainerModeRefused: --network container:<name> would hand the other
// container's traffic to the VM; it is refused, and the other container keeps its network.
func TestKataNetworkContainerModeRefused(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	server := netName(t, "web")
	content := httpServer(t, server, "runc", "--network", network)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--network", "container:"+server, "busybox", "true")
	if res.code == 0 || !strings.Contains(res.stderr, "--network container") {
		t.Errorf("--network container:%s: exit %d, stderr %q; want a failure that names --network container", server, res.code, res.stderr)
	}
	if res := fetchFrom(t, "runc", server, "--network", network); res.code != 0 || res.stdout != content {
		t.Errorf("the runc server after the refused kata container: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, content, res.stderr)
	}
}

// TestKataNetworkTwoNetworks: a container connected to two networks before it starts gets two
// NICs, named as Docker named them, and reaches servers on both by name.
func TestKataNetworkTwoNetworks(t *testing.T) {
	requireKata(t)
	net1, net2 := userNetwork(t), userNetwork(t)
	s1, s2 := netName(t, "web1"), netName(t, "web2")
	c1 := httpServer(t, s1, "runc", "--network", net1)
	c2 := httpServer(t, s2, "runc", "--network", net2)
	name := netName(t, "client")
	t.Cleanup(func() { docker(t, "", "rm", "-f", name) })
	script := fmt.Sprintf(`ls /sys/class/net | tr '\n' ' '; echo; for h in %s %s; do i=0; until timeout 5 wget -q -O - http://$h/f.txt; do i=$((i+1)); [ $i -gt 60 ] && exit 1; sleep 0.5; done; echo; done`, s1, s2)
	if res := docker(t, "", "create", "--name", name, "--runtime=kata", "--network", net1, "busybox", "sh", "-c", script); res.code != 0 {
		t.Fatalf("docker create: %s", res.stderr)
	}
	if res := docker(t, "", "network", "connect", net2, name); res.code != 0 {
		t.Fatalf("docker network connect (created container): %s", res.stderr)
	}
	res := docker(t, "", "start", "-a", name)
	want := "eth0 eth1 lo \n" + c1 + "\n" + c2 + "\n"
	if res.code != 0 || res.stdout != want {
		t.Errorf("two networks: exit %d, stdout %q (want %q), stderr %q", res.code, res.stdout, want, res.stderr)
	}
}

// TestKataNetworkConnectRunning: docker network connect on a running kata container hot-plugs a
// NIC through which it reaches a container on that network; disconnect unplugs it again.
func TestKataNetworkConnectRunning(t *testing.T) {
	requireKata(t)
	net1, net2 := userNetwork(t), userNetwork(t)
	server := netName(t, "web")
	content := httpServer(t, server, "runc", "--network", net2)
	name := netName(t, "client")
	script := fmt.Sprintf(`echo started; until timeout 5 wget -q -O - http://%s/f.txt; do sleep 0.5; done; echo; echo reached; `+
		`while [ -e /sys/class/net/eth1 ]; do sleep 0.5; done; echo unplugged; sleep 600`, server)
	detached(t, name, "kata", "--network", net1, "busybox", "sh", "-c", script)
	waitForLog(t, name, "started")
	if res := docker(t, "", "network", "connect", net2, name); res.code != 0 {
		t.Fatalf("docker network connect: %s", res.stderr)
	}
	waitForLogWithin(t, name, "reached", 90*time.Second)
	if logs := docker(t, "", "logs", name).stdout; !strings.Contains(logs, content) {
		t.Errorf("after network connect, the container fetched %q, want %q", logs, content)
	}
	if res := docker(t, "", "network", "disconnect", net2, name); res.code != 0 {
		t.Fatalf("docker network disconnect: %s", res.stderr)
	}
	waitForLogWithin(t, name, "unplugged", 60*time.Second)
}

// TestKataNetworkConnectGivesNames: a kata container started on the default bridge (no embedded
// DNS) and then connected to a user network resolves the names of that network through the relay,
// which starts when Docker rewrites its resolv.conf to name 127.0.0.11.
func TestKataNetworkConnectGivesNames(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	peer := netName(t, "peer")
	detached(t, peer, "kata", "--network", network, "busybox", "sleep", "600")
	name := netName(t, "client")
	detached(t, name, "kata", "busybox", "sleep", "600")
	if res := docker(t, "", "network", "connect", network, name); res.code != 0 {
		t.Fatalf("docker network connect: %s", res.stderr)
	}
	script := fmt.Sprintf(`i=0; until nslookup %s 127.0.0.11 && ping -c 1 -W 5 %s; do i=$((i+1)); [ $i -lt 60 ] || exit 1; sleep 0.5; done`, peer, peer)
	res := docker(t, "", "exec", name, "sh", "-c", script)
	if res.code != 0 {
		resolv := docker(t, "", "exec", name, "cat", "/etc/resolv.conf").stdout
		t.Errorf("after network connect, nslookup/ping %s: exit %d, stdout %q, stderr %q; resolv.conf %q", peer, res.code, res.stdout, res.stderr, resolv)
	}
}

func waitForLogWithin(t *testing.T, name, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if strings.Contains(docker(t, "", "logs", name).stdout, want) {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("container %s never printed %q within %s; logs: %q", name, want, within, docker(t, "", "logs", name).stdout)
}

// TestKataNetworkLeavesNothingBehind runs 20 networked kata containers and checks that no tap and
// no ingress qdisc appeared in the host's namespace, besides the usual leftovers check.
func TestKataNetworkLeavesNothingBehind(t *testing.T) {
	requireKata(t)
	network := userNetwork(t)
	before := hostNetState(t)
	for i := 0; i < 20; i++ {
		if res := docker(t, "", "run", "--rm", "--runtime=kata", "--network", network, "busybox", "true"); res.code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, res.code, res.stderr)
		}
	}
	assertNoLeftovers(t)
	var added []string
	for i := 0; i < 50; i++ {
		added = newEntries(before, hostNetState(t))
		if len(added) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("left in the host's network namespace: %s", strings.Join(added, "; "))
}

// hostNetState lists the host namespace's tun/tap links and ingress qdiscs.
func hostNetState(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("listing host links: %v", err)
	}
	var state []string
	for _, l := range links {
		if l.Type() == "tuntap" {
			state = append(state, "tap "+l.Attrs().Name)
		}
		qdiscs, _ := netlink.QdiscList(l)
		for _, q := range qdiscs {
			if q.Type() == "ingress" {
				state = append(state, "ingress qdisc on "+l.Attrs().Name)
			}
		}
	}
	return state
}

func newEntries(before, after []string) []string {
	var added []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			added = append(added, a)
		}
	}
	return added
}
