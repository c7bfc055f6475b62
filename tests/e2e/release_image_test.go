package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testenv"
)

// classicInstance is the dedicated engine instance with Docker's classic image store (graph
// drivers, manifest.json) rather than the containerd store (index.json) the shared engine uses.
const classicInstance = "oci-classic"

// The release's installer image archive (`make release-image`, written without a container
// engine) loads into both of Docker's image stores under kata-deploy:<version>, keeps the
// Dockerfile's labels and runs the version it was built with.
func TestReleaseImageArchiveLoads(t *testing.T) {
	requireEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kernel, err := testenv.KernelDeb(ctx)
	if err != nil {
		missing(t, err.Error())
	}
	version := "e2e-" + randomHex()
	dir := filepath.Join(t.TempDir(), "release")
	cmd := exec.CommandContext(ctx, "make", "-C", "../..", "release-image", "RELEASE_DIR="+dir, "VERSION="+version)
	cmd.Env = append(os.Environ(), "IMAGE_KERNEL="+kernel)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release-image: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "kata-deploy-image_"+version+"_amd64.oci.tar")
	t.Run("containerd store", func(t *testing.T) { loadAndRun(t, nil, archive, version) })
	t.Run("classic store", func(t *testing.T) { loadAndRun(t, upClassicEngine(t), archive, version) })
}

// loadAndRun loads archive into the engine of env (nil: the shared one), checks the tag, the
// labels and `docker run --rm TAG version`, and removes the image.
func loadAndRun(t *testing.T, env []string, archive, version string) {
	tag := "kata-deploy:" + version
	t.Cleanup(func() { dockerEnv(t, env, "rmi", "-f", tag) })
	r := dockerEnv(t, env, "load", "-i", archive)
	if r.code != 0 || !strings.Contains(r.stdout, "Loaded image: "+tag) {
		t.Fatalf("docker load -i %s: exit %d\n%s%s", archive, r.code, r.stdout, r.stderr)
	}
	r = dockerEnv(t, env, "image", "inspect", "--format",
		`{{index .Config.Labels "org.opencontainers.image.version"}} {{.Os}}/{{.Architecture}} {{json .Config.Entrypoint}}`, tag)
	if want := version + ` linux/amd64 ["/usr/lib/kata-deploy/kata-deploy"]`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("image inspect %s: %q, want %q (%s)", tag, r.stdout, want, r.stderr)
	}
	r = dockerEnv(t, env, "run", "--rm", tag, "version")
	if r.code != 0 || !strings.Contains(r.stdout, "kata-deploy "+version) {
		t.Fatalf("docker run %s version: exit %d\n%s%s", tag, r.code, r.stdout, r.stderr)
	}
	t.Logf("%s loaded from %s and runs: %s", tag, filepath.Base(archive), strings.SplitN(r.stdout, "\n", 2)[0])
}

// upClassicEngine starts the dedicated instance, switches its dockerd to the classic image store
// and returns its environment (DOCKER_HOST=...), purging the instance when the test ends.
func upClassicEngine(t *testing.T) []string {
	t.Helper()
	engine := func(args ...string) ([]byte, error) {
		c := exec.Command("../../hack/engine.sh", args...)
		c.Env = append(os.Environ(), "KATA_TEST_ENGINE_INSTANCE="+classicInstance)
		c.Stderr = os.Stderr
		return c.Output()
	}
	t.Cleanup(func() {
		if _, err := engine("purge"); err != nil {
			t.Errorf("purging the %s engine instance: %v", classicInstance, err)
		}
	})
	out, err := engine("up")
	if err != nil {
		t.Fatalf("hack/engine.sh up (instance %s): %v", classicInstance, err)
	}
	env := readEnvFile(t, strings.TrimSpace(string(out)))
	daemonJSON := envValue(env, "KATA_TEST_DAEMON_JSON")
	if err := os.WriteFile(daemonJSON, []byte(`{"features": {"containerd-snapshotter": false}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := engine("restart", "dockerd"); err != nil {
		t.Fatalf("hack/engine.sh restart dockerd (instance %s): %v", classicInstance, err)
	}
	if r := dockerEnv(t, env, "info", "--format", "{{json .DriverStatus}}"); strings.Contains(r.stdout, "snapshotter") || r.code != 0 {
		t.Fatalf("the %s instance still uses the containerd image store: %s%s", classicInstance, r.stdout, r.stderr)
	}
	return env
}

// readEnvFile reads the export lines of hack/engine.sh's env file.
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
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
