package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

// The installer image's tests: `make image` built with the test engine, its install run against
// a temporary host root, against the test engine's own host, and rolled out by a swarm stack.

// requireImageEnv checks what building and running the image needs.
func requireImageEnv(t *testing.T) {
	t.Helper()
	requireEngine(t)
	if os.Geteuid() != 0 {
		missing(t, "the installer image runs privileged and installs into the engine's host: run as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing(t, "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
}

// buildImage builds the installer image with hack/image.sh through the engine env names (nil:
// the test engine), with the tests' kernel package, and removes it when the test ends.
func buildImage(t *testing.T, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kernel, err := testenv.KernelDeb(ctx)
	if err != nil {
		missing(t, err.Error())
	}
	tag := "kata-deploy-e2e:" + randomHex()
	cmd := exec.CommandContext(ctx, "../../hack/image.sh", tag, filepath.Join(t.TempDir(), "context"))
	cmd.Env = append(append(os.Environ(), env...), "IMAGE_KERNEL="+kernel)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/image.sh: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	t.Cleanup(func() { dockerEnv(t, env, "rmi", "-f", tag) })
	return tag
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dockerEnv runs the docker CLI with env added (another engine's DOCKER_HOST).
func dockerEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// runImage is `docker run --rm --privileged --pid=host -v ROOT:/host -e DOCKER_HOST IMAGE args`.
func runImage(t *testing.T, image, root string, args ...string) result {
	t.Helper()
	return docker(t, "", append([]string{"run", "--rm", "--privileged", "--pid=host", "-v", root + ":/host",
		"-e", "DOCKER_HOST=" + os.Getenv("DOCKER_HOST"), image}, args...)...)
}

// runtimeType is the runtimeType daemon.json registers for name ("" when it does not).
func runtimeType(t *testing.T, daemonJSON []byte, name string) string {
	t.Helper()
	var cfg struct {
		Runtimes map[string]struct {
			RuntimeType string `json:"runtimeType"`
		} `json:"runtimes"`
	}
	if err := json.Unmarshal(daemonJSON, &cfg); err != nil {
		t.Fatalf("daemon.json: %v\n%s", err, daemonJSON)
	}
	return cfg.Runtimes[name].RuntimeType
}

// stagingLeft lists what the image's runs left in root's /run.
func stagingLeft(t *testing.T, root string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(root, "run", "kata-deploy-image-*"))
	return m
}

// TestImageInstallOnEngine installs with the image onto the test engine's own host (/ as /host),
// runs a VM container, and uninstalls with the image: daemon.json is byte for byte what it was.
func TestImageInstallOnEngine(t *testing.T) {
	requireImageEnv(t)
	const (
		name   = "kata-image-e2e"
		prefix = "/opt/kata-deploy-image-e2e"
	)
	if _, err := os.Lstat(prefix); err == nil {
		t.Fatalf("%s exists before the test: remove what an earlier run left", prefix)
	}
	image := buildImage(t, nil)
	daemonJSON := os.Getenv("KATA_TEST_DAEMON_JSON")
	before, err := os.ReadFile(daemonJSON)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--prefix", prefix}
	t.Cleanup(func() {
		if _, err := os.Lstat(prefix); err == nil {
			t.Errorf("%s left after the test: uninstalling", prefix)
			runImage(t, image, "/", append([]string{"uninstall", "--force"}, flags...)...)
		}
	})
	imageWithPlugins(t, image, name, daemonJSON)
	r := runImage(t, image, "/", append([]string{"install", "--runtime-name", name, "--kernel-cache", t.TempDir()}, flags...)...)
	if r.code != 0 {
		t.Fatalf("install through the image: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("install: %s", r.stdout)
	after, _ := os.ReadFile(daemonJSON)
	if got, want := runtimeType(t, after, name), prefix+"/current/bin/containerd-shim-kata-v2"; got != want {
		t.Errorf("daemon.json registers %q, want the host's path %q", got, want)
	}
	uname := docker(t, "", "run", "--rm", "--runtime="+name, "busybox", "uname", "-r")
	hostKernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	if uname.code != 0 || strings.TrimSpace(uname.stdout) == "" || strings.TrimSpace(uname.stdout) == strings.TrimSpace(string(hostKernel)) {
		t.Errorf("docker run --runtime=%s busybox uname -r: exit %d, %q (host kernel %q)\n%s", name, uname.code, uname.stdout, hostKernel, uname.stderr)
	}
	if s := runImage(t, image, "/", "status", "--prefix", prefix); s.code != 0 {
		t.Errorf("status through the image: exit %d\n%s\n%s", s.code, s.stdout, s.stderr)
	}
	u := runImage(t, image, "/", append([]string{"uninstall"}, flags...)...)
	if u.code != 0 {
		t.Fatalf("uninstall through the image: exit %d\n%s\n%s", u.code, u.stdout, u.stderr)
	}
	if now, _ := os.ReadFile(daemonJSON); string(now) != string(before) {
		t.Errorf("daemon.json after uninstall:\n%s\nwant:\n%s", now, before)
	}
	if _, err := os.Lstat(prefix); err == nil {
		t.Errorf("%s is left after uninstall", prefix)
	}
	if left := stagingLeft(t, "/"); len(left) > 0 {
		t.Errorf("staging directories left: %v", left)
	}
}

// imageWithPlugins runs install --with-plugins through the image (kata-plugins is in it). Where
// systemd runs the unit serves both drivers and uninstall removes them; elsewhere (the test
// engine's host) a process started from the image would die with its container, so install is
// refused, naming the fix, before the host changes.
func imageWithPlugins(t *testing.T, image, name, daemonJSON string) {
	t.Helper()
	const prefix = "/opt/kata-deploy-image-plugins-e2e"
	dir := t.TempDir()
	flags := []string{"--prefix", prefix, "--runtime-name", name + "-plugins",
		"--plugin-name", "kata-block-img-e2e", "--plugin-network-name", "kata-net-img-e2e",
		"--plugin-state-dir", filepath.Join(dir, "block"), "--plugin-network-state-dir", filepath.Join(dir, "net")}
	before, _ := os.ReadFile(daemonJSON)
	t.Cleanup(func() {
		if _, err := os.Lstat(prefix); err == nil {
			runImage(t, image, "/", append([]string{"uninstall", "--force"}, flags[:2]...)...)
		}
	})
	r := runImage(t, image, "/", append([]string{"install", "--with-plugins", "--kernel-cache", filepath.Join(dir, "kernel")}, flags...)...)
	if !pluginsvc.SystemdRuns() {
		if r.code == 0 || !strings.Contains(r.stderr, "systemd does not run on this host") || !strings.Contains(r.stderr, "install --with-plugins` on the host itself") {
			t.Fatalf("install --with-plugins through the image without systemd: exit %d, want a refusal naming the fix\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("install --with-plugins through the image, refused: %s", strings.TrimSpace(r.stderr))
		if _, err := os.Lstat(prefix); err == nil {
			t.Errorf("the refused install created %s", prefix)
		}
		if now, _ := os.ReadFile(daemonJSON); string(now) != string(before) {
			t.Errorf("the refused install changed daemon.json:\n%s", now)
		}
		if left := stagingLeft(t, "/"); len(left) > 0 {
			t.Errorf("staging directories left: %v", left)
		}
		return
	}
	if r.code != 0 {
		t.Fatalf("install --with-plugins through the image: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range []string{"kata-block-img-e2e", "kata-net-img-e2e"} {
		if sock := filepath.Join(pluginsvc.DefaultSocketDir, n+".sock"); !pluginsvc.Reachable(sock) {
			t.Errorf("%s is not served after install --with-plugins through the image", sock)
		}
	}
	if u := runImage(t, image, "/", append([]string{"uninstall"}, flags[:2]...)...); u.code != 0 {
		t.Fatalf("uninstall through the image: exit %d\n%s\n%s", u.code, u.stdout, u.stderr)
	}
}
