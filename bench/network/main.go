// Command network measures the network path into a container, kata and runc side by side in one
// run: host -> container throughput through a published port (-p 127.0.0.1:<port>:5001, the
// path `docker run -p` users take: docker-proxy, the bridge, and for kata the veth -> tap
// redirect and the VM's virtio-net card), and the latency of a fresh connection with a one-byte
// request and answer over the same path.
//
//	hack/engine.sh up && . "$(hack/engine.sh env)" && go run ./bench/network -mib 256 -n 3
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
	n := flag.Int("n", 3, "throughput runs per runtime")
	pings := flag.Int("pings", 200, "connections per runtime for the latency figures")
	flag.Parse()
	if err := run(*mib, *n, *pings); err != nil {
		fmt.Fprintln(os.Stderr, "network:", err)
		os.Exit(1)
	}
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

	var results []result
	for _, rt := range []string{"runc", runtimeName} {
		r, err := measure(rt, sink, mib, n, pings)
		if err != nil {
			return fmt.Errorf("%s: %w", rt, err)
		}
		results = append(results, r)
	}
	fmt.Printf("\nhost -> container through a published port (docker-proxy on 127.0.0.1), guest kernel %s\n", k.GuestKernel)
	fmt.Printf("  %-14s %-32s %s\n", "", fmt.Sprintf("throughput, %d MiB x %d (MiB/s)", mib, n), fmt.Sprintf("connect+1-byte echo, %d conns", pings))
	fmt.Printf("  %-14s %10s %10s %10s   %10s %10s %10s\n", "", "median", "min", "max", "median", "p90", "max")
	for _, r := range results {
		t := slices.Sorted(slices.Values(r.throughput))
		l := slices.Sorted(slices.Values(r.latency))
		fmt.Printf("  %-14s %10.1f %10.1f %10.1f   %10s %10s %10s\n", r.name,
			t[len(t)/2], t[0], t[len(t)-1], us(l[len(l)/2]), us(l[len(l)*9/10]), us(l[len(l)-1]))
	}
	if len(results) == 2 {
		rc, kt := results[0], results[1]
		fmt.Printf("  kata/runc: throughput %.2fx, latency %.2fx\n",
			median(kt.throughput)/median(rc.throughput), float64(medianD(kt.latency))/float64(medianD(rc.latency)))
	}
	return nil
}

// measure starts a sink container under rt with a published port and measures through it.
func measure(rt, sink string, mib, n, pings int) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	name := fmt.Sprintf("netbench-%s-%d", rt, time.Now().UnixNano())
	out, err := exec.Command("docker", "run", "-d", "--name", name, "--runtime="+rt,
		"-p", fmt.Sprintf("127.0.0.1:%d:5001", port), "-v", sink+":/sink:ro", "busybox", "/sink").CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("starting the sink: %v: %s", err, out)
	}
	defer exec.Command("docker", "rm", "-f", name).Run()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := waitReady(addr, 2*time.Minute); err != nil {
		return result{}, err
	}
	label := rt
	if rt == runtimeName {
		label = "kata"
	}
	r := result{name: label}
	for i := 0; i < n; i++ {
		mibs, err := throughput(addr, mib)
		if err != nil {
			return r, err
		}
		r.throughput = append(r.throughput, mibs)
	}
	for i := 0; i < pings; i++ {
		d, err := ping(addr)
		if err != nil {
			return r, err
		}
		r.latency = append(r.latency, d)
	}
	return r, nil
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
