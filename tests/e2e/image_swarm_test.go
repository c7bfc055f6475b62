package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// swarmInstance is the dedicated engine instance the swarm test inits a swarm on (never the
// shared engine): brought up for the test, purged after it.
const swarmInstance = "swarm"

// upSwarmEngine starts the dedicated instance and returns its environment (DOCKER_HOST=...),
// purging it when the test ends.
func upSwarmEngine(t *testing.T) []string {
	t.Helper()
	engine := func(cmd string) ([]byte, error) {
		c := exec.Command("../../hack/engine.sh", cmd)
		c.Env = append(os.Environ(), "KATA_TEST_ENGINE_INSTANCE="+swarmInstance)
		c.Stderr = os.Stderr
		return c.Output()
	}
	t.Cleanup(func() {
		if _, err := engine("purge"); err != nil {
			t.Errorf("purging the %s engine instance: %v", swarmInstance, err)
		}
	})
	out, err := engine("up")
	if err != nil {
		t.Fatalf("hack/engine.sh up (instance %s): %v", swarmInstance, err)
	}
	f, err := os.Open(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "export "); ok {
			env = append(env, kv)
		}
	}
	return env
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond every 2 s until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestImageSwarmStack deploys configs/swarm/kata-deploy-stack.yml on a single-node swarm of a
// dedicated engine: the launcher installs through the node's socket and labels the node, a VM
// container runs, and removing the stack uninstalls (daemon.json as it was) and unlabels.
func TestImageSwarmStack(t *testing.T) {
	requireImageEnv(t)
	const (
		stack  = "kata-deploy-e2e"
		prefix = "/opt/kata-deploy-swarm-e2e"
	)
	if _, err := os.Lstat(prefix); err == nil {
		t.Fatalf("%s exists before the test: remove what an earlier run left", prefix)
	}
	env := upSwarmEngine(t)
	d := func(args ...string) result { return dockerEnv(t, env, args...) }
	if r := d("swarm", "init", "--advertise-addr", "127.0.0.1"); r.code != 0 {
		t.Fatalf("docker swarm init: %s", r.stderr)
	}
	t.Cleanup(func() { d("swarm", "leave", "--force") })
	image := buildImage(t, env)
	daemonJSON := envValue(env, "KATA_TEST_DAEMON_JSON")
	before, err := os.ReadFile(daemonJSON)
	if err != nil {
		t.Fatal(err)
	}
	// The product's stack file, with this test's prefix and kernel cache.
	src, err := os.ReadFile("../../configs/swarm/kata-deploy-stack.yml")
	if err != nil {
		t.Fatal(err)
	}
	const cmd = `command: ["fleet-launch"]`
	if !strings.Contains(string(src), cmd) {
		t.Fatalf("the stack file has no %s", cmd)
	}
	file := filepath.Join(t.TempDir(), "stack.yml")
	testCmd := `command: ["fleet-launch", "--prefix", "` + prefix + `", "--", "--kernel-cache", "` + t.TempDir() + `"]`
	if err := os.WriteFile(file, []byte(strings.Replace(string(src), cmd, testCmd, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	stackEnv := append(env, "KATA_DEPLOY_IMAGE="+image,
		"KATA_DEPLOY_DOCKER_SOCKET="+strings.TrimPrefix(envValue(env, "DOCKER_HOST"), "unix://"))
	t.Cleanup(func() {
		dockerEnv(t, stackEnv, "stack", "rm", stack)
		if _, err := os.Lstat(prefix); err == nil {
			t.Errorf("%s left after the test", prefix)
		}
	})
	if r := dockerEnv(t, stackEnv, "stack", "deploy", "--resolve-image", "never", "-c", file, stack); r.code != 0 {
		t.Fatalf("docker stack deploy: %s\n%s", r.stdout, r.stderr)
	}
	label := func() string {
		return strings.TrimSpace(d("node", "inspect", "self", "-f", `{{index .Spec.Labels "kata-deploy"}}`).stdout)
	}
	if !waitFor(10*time.Minute, func() bool { return label() == "installed" }) {
		logs := d("service", "logs", "--raw", stack+"_launcher")
		ps := d("service", "ps", "--no-trunc", stack+"_launcher")
		t.Fatalf("the node was not labelled kata-deploy=installed within 10 min\n%s\n%s%s", ps.stdout, logs.stdout, logs.stderr)
	}
	if got, want := runtimeType(t, mustRead(t, daemonJSON), "kata"), prefix+"/current/bin/containerd-shim-kata-v2"; got != want {
		t.Errorf("daemon.json registers %q, want %q", got, want)
	}
	uname := d("run", "--rm", "--runtime=kata", "busybox", "uname", "-r")
	hostKernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	if uname.code != 0 || strings.TrimSpace(uname.stdout) == "" || strings.TrimSpace(uname.stdout) == strings.TrimSpace(string(hostKernel)) {
		t.Errorf("docker run --runtime=kata busybox uname -r: exit %d, %q\n%s", uname.code, uname.stdout, uname.stderr)
	}
	if r := d("stack", "rm", stack); r.code != 0 {
		t.Fatalf("docker stack rm: %s", r.stderr)
	}
	if !waitFor(5*time.Minute, func() bool {
		return label() == "" && string(mustRead(t, daemonJSON)) == string(before) && d("ps", "-aq").stdout == ""
	}) {
		t.Fatalf("after docker stack rm: label %q, daemon.json\n%s\ncontainers %q", label(), mustRead(t, daemonJSON), d("ps", "-a").stdout)
	}
	if _, err := os.Lstat(prefix); err == nil {
		t.Errorf("%s left after docker stack rm", prefix)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
