package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/sandbox"
)

// TestKataTemplate runs containers with [factory] template = true: the first builds the VM
// template, the next ones are clones of it (their QEMU maps the template's RAM file privately).
// Output, exit codes, networking and randomness are as without a template.
func TestKataTemplate(t *testing.T) {
	requireKata(t)
	templates := filepath.Join(testenv.StateDir+".cache", "template")
	os.RemoveAll(templates)
	t.Cleanup(func() { os.RemoveAll(templates) })
	unregister, err := requireKataVariant(t, "kata-template", func(c *config.Config) { c.Factory.Template = true })
	if err != nil {
		t.Fatal(err)
	}
	defer unregister()

	res := docker(t, "", "run", "--rm", "--runtime=kata-template", "busybox", "sh", "-c", "echo hello from a template; exit 3")
	if res.code != 3 || res.stdout != "hello from a template\n" {
		t.Fatalf("first container: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if ready, _ := filepath.Glob(filepath.Join(templates, "*", "ready")); len(ready) != 1 {
		t.Fatalf("the first container left no template in %s: %v", templates, ready)
	}

	t.Run("a container runs in a clone", func(t *testing.T) {
		name := netName(t, "clone")
		detached(t, name, "kata-template", "busybox", "sh", "-c", "echo up; sleep 600")
		waitForLog(t, name, "up")
		pid := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.Pid}}", name).stdout)
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil {
			t.Fatalf("QEMU's command line (pid %q): %v", pid, err)
		}
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if !strings.Contains(args, "memory-backend-file") || !strings.Contains(args, "share=off") || !strings.Contains(args, "-incoming defer") {
			t.Errorf("the container's QEMU is not a clone: %s", args)
		}
	})

	t.Run("two clones read different random bytes", func(t *testing.T) {
		if a, b := randomBytes(t, "kata-template"), randomBytes(t, "kata-template"); a == b {
			t.Errorf("two clones read the same bytes: %s", a)
		}
	})

	t.Run("a clone reaches the network", func(t *testing.T) {
		network := userNetwork(t)
		server := netName(t, "web")
		content := httpServer(t, server, "runc", "--network", network)
		if res := fetchFrom(t, "kata-template", server, "--network", network); res.code != 0 || res.stdout != content {
			t.Errorf("fetch from a clone: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, content, res.stderr)
		}
	})

	t.Run("a broken template boots the container cold", func(t *testing.T) {
		mems, _ := filepath.Glob(filepath.Join(templates, "*", "memory"))
		for _, m := range mems {
			os.Remove(m)
		}
		res := docker(t, "", "run", "--rm", "--runtime=kata-template", "busybox", "echo", "cold")
		if res.code != 0 || res.stdout != "cold\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
		}
	})
	assertNoLeftovers(t)
}

// randomBytes runs a container that prints 16 bytes of /dev/urandom in hex.
func randomBytes(t *testing.T, runtime string) string {
	t.Helper()
	res := docker(t, "", "run", "--rm", "--runtime="+runtime, "busybox", "sh", "-c", "head -c 16 /dev/urandom | od -An -tx1")
	if res.code != 0 || len(strings.Fields(res.stdout)) != 16 {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// requireKataVariant registers the kata runtime under name with a changed configuration.
func requireKataVariant(t *testing.T, name string, mutate func(*config.Config)) (func(), error) {
	t.Helper()
	return requireKata(t).RegisterVariant(name, mutate)
}

// TestKataPool runs containers with [factory] pool = 1: after the first container, each one
// takes the clone waiting in the pool (its QEMU was started before the container), and the pool
// is refilled behind it. Output, exit codes, networking and randomness are as without a pool;
// removing the pool (as uninstall does) leaves nothing.
func TestKataPool(t *testing.T) {
	requireKata(t)
	cache := testenv.StateDir + ".cache"
	removePool := func() {
		if err := sandbox.RemovePool(context.Background(), cache); err != nil {
			t.Errorf("removing the pool: %v", err)
		}
	}
	removePool()
	t.Cleanup(removePool)
	unregister, err := requireKataVariant(t, "kata-pool", func(c *config.Config) { c.Factory.Template, c.Factory.Pool = true, 1 })
	if err != nil {
		t.Fatal(err)
	}
	defer unregister()

	res := docker(t, "", "run", "--rm", "--runtime=kata-pool", "busybox", "sh", "-c", "echo first; exit 3")
	if res.code != 3 || res.stdout != "first\n" {
		t.Fatalf("first container: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	t.Run("a container runs in the waiting clone", func(t *testing.T) {
		pid := waitingClone(t, cache)
		name := netName(t, "pooled")
		detached(t, name, "kata-pool", "busybox", "sh", "-c", "echo up; sleep 600")
		waitForLog(t, name, "up")
		if got := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.Pid}}", name).stdout); got != pid {
			t.Errorf("the container's QEMU is pid %s, the waiting clone's was %s", got, pid)
		}
		waitingClone(t, cache) // refilled
	})
	t.Run("two pooled clones read different random bytes", func(t *testing.T) {
		waitingClone(t, cache)
		a := randomBytes(t, "kata-pool")
		waitingClone(t, cache)
		if b := randomBytes(t, "kata-pool"); a == b {
			t.Errorf("two pooled clones read the same bytes: %s", a)
		}
	})
	t.Run("the container sees its own network cards only", func(t *testing.T) {
		// The waiting clone's spare card became eth0, or was unplugged for --network none.
		for _, tc := range []struct {
			network string
			want    []string
		}{{"bridge", []string{"lo", "eth0"}}, {"none", []string{"lo"}}} {
			waitingClone(t, cache)
			res := docker(t, "", "run", "--rm", "--network", tc.network, "--runtime=kata-pool", "busybox", "sh", "-c", "ls /sys/class/net")
			if got := strings.Fields(res.stdout); res.code != 0 || !sameSet(got, tc.want) {
				t.Errorf("--network %s: exit %d, cards %q, want %q (stderr %q)", tc.network, res.code, got, tc.want, res.stderr)
			}
		}
	})
	t.Run("a pooled clone reaches the network", func(t *testing.T) {
		network := userNetwork(t)
		server := netName(t, "web")
		content := httpServer(t, server, "runc", "--network", network)
		waitingClone(t, cache)
		if res := fetchFrom(t, "kata-pool", server, "--network", network); res.code != 0 || res.stdout != content {
			t.Errorf("fetch from a pooled clone: exit %d, got %q (want %q), stderr %q", res.code, res.stdout, content, res.stderr)
		}
	})
	removePool()
	assertNoLeftovers(t)
	if _, err := os.Lstat(runtimecache.PoolDir(cache)); !os.IsNotExist(err) {
		t.Errorf("the pool's directory is still there: %v", err)
	}
}

// waitingClone waits until the pool has a clone waiting and returns its QEMU's pid.
func waitingClone(t *testing.T, cache string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		slots, _ := runtimecache.PoolSlots(cache)
		for _, s := range slots {
			if s.State == runtimecache.SlotStateReady {
				if b, err := os.ReadFile(filepath.Join(s.Dir, runtimecache.SlotVM, "qemu.pid")); err == nil {
					return strings.TrimSpace(string(b))
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(runtimecache.PoolDir(cache), "fill.log"))
	t.Fatalf("no clone waits in the pool after 2 minutes; the fill log says:\n%s", log)
	return ""
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
