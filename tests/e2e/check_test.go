package e2e

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/check"
)

func TestCheckJSONAgainstEngine(t *testing.T) {
	requireEngine(t)
	res := kataDeploy(t, "check", "--output", "json")
	if res.code != 0 {
		t.Fatalf("check exited %d, want 0 (the engine host can run VM containers)\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	var rep check.Report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("check --output json is not JSON: %v\n%s", err, res.stdout)
	}
	if rep.SchemaVersion != check.SchemaVersion || !rep.CanRunVMContainers {
		t.Errorf("schemaVersion=%d canRunVMContainers=%v", rep.SchemaVersion, rep.CanRunVMContainers)
	}

	// The Docker fields equal what `docker version` says.
	ver := run(t, "docker", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
	if ver.code != 0 {
		t.Fatalf("docker version: %s", ver.stderr)
	}
	want := strings.Fields(ver.stdout)
	if !rep.Docker.Reachable || rep.Docker.Version != want[0] || rep.Docker.APIVersion != want[1] {
		t.Errorf("docker: reachable=%v version=%q api=%q; docker version says %q", rep.Docker.Reachable, rep.Docker.Version, rep.Docker.APIVersion, want)
	}
	if !rep.Docker.ShimV2Runtimes {
		t.Errorf("Docker %s should support shim v2 runtimes", rep.Docker.Version)
	}

	// The daemon.json and pid are the test engine's, found from the process serving DOCKER_HOST.
	if got, want := rep.Docker.ConfigFile, os.Getenv("KATA_TEST_DAEMON_JSON"); got != want || rep.Docker.ConfigFileSource != "flag" {
		t.Errorf("config file = %q (%s), want %q from --config-file", got, rep.Docker.ConfigFileSource, want)
	}
	if pidData, err := os.ReadFile(os.Getenv("KATA_TEST_DOCKERD_PIDFILE")); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData))); pid != rep.Docker.PID {
			t.Errorf("dockerd pid = %d, pidfile says %d", rep.Docker.PID, pid)
		}
	}
	if !contains(rep.Docker.Runtimes, "runc") || rep.Docker.DefaultRuntime != "runc" {
		t.Errorf("runtimes = %v, default %q; want runc listed and default", rep.Docker.Runtimes, rep.Docker.DefaultRuntime)
	}

	// Without vmx/svm (the CI machines) the runtime must fall back to TCG and say why.
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if !strings.Contains(string(cpuinfo), " vmx") && !strings.Contains(string(cpuinfo), " svm") {
		if rep.Accelerator != "tcg" || rep.AcceleratorReason == "" {
			t.Errorf("accelerator = %q (%q), want tcg with a reason", rep.Accelerator, rep.AcceleratorReason)
		}
		if l, _ := rep.Line("virtualization.accelerator"); l.Status != check.Warn || l.Remedy == "" {
			t.Errorf("accelerator line = %+v, want a warning with a remedy", l)
		}
	}
	if l, ok := rep.Line("host.distro"); !ok || l.Value == "" {
		t.Errorf("host.distro line = %+v", l)
	}
}

func TestCheckUnreachableDockerFails(t *testing.T) {
	sock := t.TempDir() + "/nothing.sock"
	res := kataDeploy(t, "check", "--output", "json", "--host", "unix://"+sock)
	if res.code != 1 {
		t.Fatalf("exit code = %d, want 1 when Docker is unreachable\n%s%s", res.code, res.stdout, res.stderr)
	}
	var rep check.Report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	l, _ := rep.Line("docker.daemon")
	if rep.CanRunVMContainers || l.Status != check.Fail || !strings.Contains(l.Remedy, "DOCKER_HOST") {
		t.Errorf("docker.daemon line = %+v, canRun=%v", l, rep.CanRunVMContainers)
	}
}

func TestCheckTextAndUsage(t *testing.T) {
	res := kataDeploy(t, "check", "--output", "yaml")
	if res.code != 2 || !strings.Contains(res.stderr, `--output must be "text" or "json"`) {
		t.Errorf("bad --output: code %d, stderr %q", res.code, res.stderr)
	}
	res = kataDeploy(t, "check", "--no-such-flag")
	if res.code != 2 {
		t.Errorf("unknown flag: code %d, want 2", res.code)
	}
	res = kataDeploy(t, "check", "extra")
	if res.code != 2 {
		t.Errorf("extra argument: code %d, want 2", res.code)
	}
	res = kataDeploy(t, "version")
	if res.code != 0 || !strings.Contains(res.stdout, "kata-deploy ") || !strings.Contains(res.stdout, "go:") {
		t.Errorf("version: code %d, out %q", res.code, res.stdout)
	}
	res = kataDeploy(t, "completion", "bash")
	if res.code != 0 || !strings.Contains(res.stdout, "kata-deploy") {
		t.Errorf("completion bash: code %d", res.code)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
