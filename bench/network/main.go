// Command network measures the network path into a container, kata and runc side by side in one
// run, for each wiring: host -> container throughput, and the latency of a fresh connection with
// a one-byte request and answer, over:
//
//   - a published port on the default bridge (-p 127.0.0.1:<port>:5001, the path `docker run -p`
//     users take: docker-proxy, the bridge, and for kata the veth -> tap redirect and the VM's
//     virtio-net card);
//   - the container's address on the default bridge (no docker-proxy: the bridge, and for kata
//     the tcfilter redirect);
//   - the container's address on a kata-net network (plugin/network, served by kata-plugins
//     started here): for kata the VM's tap is a port of the bridge itself (one hop).
//
// Run:
//
//	. "$(hack/engine.sh up)" && go run ./bench/network -mib 256 -n 3
//
// Needs root, QEMU and the test engine. Only loopback and the test engine's own networks carry
// traffic. Machines here are noisy and the VM may be emulated (TCG): compare within one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

const runtimeName = "kata-netbench"

func main() {
	mib := flag.Int("mib", 256, "MiB sent per throughput run")
	n := flag.Int("n", 3, "rounds: one throughput run per runtime and wiring in each")
	pings := flag.Int("pings", 200, "connections per runtime and wiring for the latency figures (spread over the rounds)")
	flag.Parse()
	if err := run(*mib, *n, *pings); err != nil {
		fmt.Fprintln(os.Stderr, "network:", err)
		os.Exit(1)
	}
}

// wiring is a way into the container.
type wiring struct {
	label   string
	network string // "" = the default bridge
	publish bool   // through a published port, else the container's address
}

// result is what one runtime achieved.
type result struct {
	name       string
	throughput []float64 // MiB/s per run
	latency    []time.Duration
}

func run(mib, n, pings int) error {
	if !testenv.EngineUp() {
		return errors.New("the test engine is not up: hack/engine.sh up && . \"$(hack/engine.sh env)\"")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kata-netbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	fmt.Println("building the shim, the agent, the guest image and the sink ...")
	k, err := testenv.SetUpKata(ctx, dir, runtimeName)
	if err != nil {
		return err
	}
	defer k.Unregister()
	sink := filepath.Join(dir, "sink")
	build := exec.Command("go", "build", "-trimpath", "-o", sink, "github.com/kata-deploy/kata-deploy/bench/network/sink")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the sink: %v\n%s", err, out)
	}

	netName, stop, err := kataNet(ctx, dir)
	if err != nil {
		return err
	}
	defer stop()
	wirings := []wiring{
		{"published port, default bridge", "", true},
		{"address, default bridge", "", false},
		{"address, kata-net", netName, false},
	}
	// Every sink runs at once and the runs are interleaved, round after round: a load that comes
	// and goes on this host weighs on every wiring alike.
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.remove()
		}
	}()
	for _, w := range wirings {
		for _, rt := range []string{"runc", runtimeName} {
			t, err := start(rt, sink, w)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", rt, w.label, err)
			}
			targets = append(targets, t)
		}
	}
	for round := 0; round < n; round++ {
		for _, t := range targets {
			if err := t.measure(mib, pings/n+1); err != nil {
				return fmt.Errorf("%s: %w", t.result.name, err)
			}
		}
	}
	var results []result
	for _, t := range targets {
		results = append(results, t.result)
	}
	fmt.Printf("\nhost -> container, guest kernel %s\n", k.GuestKernel)
	fmt.Printf("  %-38s %-32s %s\n", "", fmt.Sprintf("throughput, %d MiB x %d (MiB/s)", mib, n), fmt.Sprintf("connect+1-byte echo, %d conns", pings))
	fmt.Printf("  %-38s %10s %10s %10s   %10s %10s %10s\n", "", "median", "min", "max", "median", "p90", "max")
	for _, r := range results {
		t := slices.Sorted(slices.Values(r.throughput))
		l := slices.Sorted(slices.Values(r.latency))
		fmt.Printf("  %-38s %10.1f %10.1f %10.1f   %10s %10s %10s\n", r.name,
			t[len(t)/2], t[0], t[len(t)-1], us(l[len(l)/2]), us(l[len(l)*9/10]), us(l[len(l)-1]))
	}
	for i := 0; i+1 < len(results); i += 2 {
		rc, kt := results[i], results[i+1]
		fmt.Printf("  %s: kata/runc throughput %.2fx, latency %.2fx\n", wirings[i/2].label,
			median(kt.throughput)/median(rc.throughput), float64(medianD(kt.latency))/float64(medianD(rc.latency)))
	}
	tc, br := results[3], results[5]
	fmt.Printf("  kata, kata-net (bridged tap) / default bridge (tcfilter): throughput %.2fx, latency %.2fx\n",
		median(br.throughput)/median(tc.throughput), float64(medianD(br.latency))/float64(medianD(tc.latency)))
	return nil
}

// target is a running sink container and what was measured through it.
type target struct {
	name, addr string
	result     result
}

// start runs a sink container under rt on w and waits until it answers.
func start(rt, sink string, w wiring) (*target, error) {
	name := fmt.Sprintf("netbench-%s-%d", rt, time.Now().UnixNano())
	args := []string{"run", "-d", "--name", name, "--runtime=" + rt, "-v", sink + ":/sink:ro"}
	port := 5001
	if w.publish {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
		args = append(args, "-p", fmt.Sprintf("127.0.0.1:%d:5001", port))
	}
	if w.network != "" {
		args = append(args, "--network", w.network)
	}
	out, err := exec.Command("docker", append(args, "busybox", "/sink")...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("starting the sink: %v: %s", err, out)
	}
	label := rt
	if rt == runtimeName {
		label = "kata"
	}
	t := &target{name: name, result: result{name: label + ", " + w.label}}
	host := "127.0.0.1"
	if !w.publish {
		if host, err = containerIP(name); err != nil {
			t.remove()
			return nil, err
		}
	}
	t.addr = net.JoinHostPort(host, strconv.Itoa(port))
	if err := waitReady(t.addr, 2*time.Minute); err != nil {
		t.remove()
		return nil, err
	}
	return t, nil
}

func (t *target) remove() { exec.Command("docker", "rm", "-f", t.name).Run() }

// measure adds one throughput run and pings latency samples.
func (t *target) measure(mib, pings int) error {
	mibs, err := throughput(t.addr, mib)
	if err != nil {
		return err
	}
	t.result.throughput = append(t.result.throughput, mibs)
	for i := 0; i < pings; i++ {
		d, err := ping(t.addr)
		if err != nil {
			return err
		}
		t.result.latency = append(t.result.latency, d)
	}
	return nil
}

// containerIP is the container's one IPv4 address.
func containerIP(name string) (string, error) {
	out, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).Output()
	if err != nil {
		return "", fmt.Errorf("docker inspect %s: %w", name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 || net.ParseIP(f[0]) == nil {
		return "", fmt.Errorf("container %s has addresses %q, want one", name, f)
	}
	return f[0], nil
}

// kataNet builds kata-plugins, serves its network driver from dir and creates a network of it.
func kataNet(ctx context.Context, dir string) (string, func(), error) {
	bin := filepath.Join(dir, "kata-plugins")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/kata-deploy/kata-deploy/cmd/kata-plugins").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("building kata-plugins: %w: %s", err, out)
	}
	const driver = "kata-net-bench"
	cmd := exec.Command(bin, "--volume-name", driver+"-vol", "--state-dir", filepath.Join(dir, "vol"),
		"--network-name", driver, "--network-state-dir", filepath.Join(dir, "net"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("netbench-%d", time.Now().UnixNano()%1e9)
	stop := func() {
		exec.Command("docker", "network", "rm", name).Run()
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = exec.Command("docker", "network", "create", "-d", driver, name).CombinedOutput(); err == nil {
			return name, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("docker network create -d %s: %v: %s", driver, err, out)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady pings until the sink answers: the container (or the VM) is still starting.
func waitReady(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		_, err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sink at %s did not answer within %s: %w", addr, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ping times a fresh connection with a one-byte request and answer.
func ping(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'p'}); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'p' {
		return 0, fmt.Errorf("no answer from the sink: %v", err)
	}
	return time.Since(start), nil
}

// throughput sends mib MiB and returns MiB/s, counted until the sink confirmed every byte.
func throughput(addr string, mib int) (float64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	buf := make([]byte, 1<<20)
	start := time.Now()
	if _, err := c.Write([]byte{'c'}); err != nil {
		return 0, err
	}
	for i := 0; i < mib; i++ {
		if _, err := c.Write(buf); err != nil {
			return 0, fmt.Errorf("sending: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	answer, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		return 0, err
	}
	if got := strings.TrimSpace(string(answer)); got != strconv.Itoa(mib<<20) {
		return 0, fmt.Errorf("the sink received %q bytes, want %d", got, mib<<20)
	}
	return float64(mib) / elapsed.Seconds(), nil
}

func median(v []float64) float64 { s := slices.Sorted(slices.Values(v)); return s[len(s)/2] }

func medianD(v []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(v))
	return s[len(s)/2]
}

func us(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}
