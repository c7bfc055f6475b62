package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testenv"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// The VM runtime core, compared with runc where that makes sense. Every container is removed.

func TestKataRunsInGuestKernel(t *testing.T) {
	k := requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "busybox", "uname", "-r")
	if res.code != 0 {
		t.Fatalf("docker run --runtime=kata: exit %d\n%s", res.code, res.stderr)
	}
	host, _ := exec.Command("uname", "-r").Output()
	got := strings.TrimSpace(res.stdout)
	if got != k.GuestKernel || got == strings.TrimSpace(string(host)) {
		t.Errorf("uname -r in the kata container = %q; want the guest kernel %q (host %q)", got, k.GuestKernel, strings.TrimSpace(string(host)))
	}
}

func TestKataExitCodes(t *testing.T) {
	requireKata(t)
	for _, code := range []int{0, 1, 42} {
		res := docker(t, "", "run", "--rm", "--runtime=kata", "busybox", "sh", "-c", fmt.Sprintf("exit %d", code))
		if res.code != code {
			t.Errorf("exit %d: docker run returned %d (%s)", code, res.code, res.stderr)
		}
	}
}

func TestKataKillGives137(t *testing.T) {
	requireKata(t)
	name := "kata-kill-" + fmt.Sprint(time.Now().UnixNano())
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "busybox", "sleep", "600"); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "kill", name); res.code != 0 {
		t.Fatalf("docker kill: %s", res.stderr)
	}
	res := docker(t, "", "wait", name)
	if strings.TrimSpace(res.stdout) != "137" {
		t.Errorf("exit code after docker kill = %q, want 137", strings.TrimSpace(res.stdout))
	}
}

func TestKataStdoutStderrSeparated(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "busybox", "sh", "-c", "echo to-out; echo to-err >&2; echo more-out")
	if res.stdout != "to-out\nmore-out\n" || res.stderr != "to-err\n" {
		t.Errorf("stdout = %q, stderr = %q", res.stdout, res.stderr)
	}
}

func TestKataLargeOutputMatchesRunc(t *testing.T) {
	requireKata(t)
	script := "i=0; while [ $i -lt 24000 ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz0123456789; i=$((i+1)); done | head -c 1048576"
	sums := map[string]string{}
	for _, rt := range []string{"runc", "kata"} {
		res := docker(t, "", "run", "--rm", "--runtime="+rt, "busybox", "sh", "-c", script)
		if res.code != 0 || len(res.stdout) != 1<<20 {
			t.Fatalf("%s: exit %d, %d bytes of output, want 1 MiB (%s)", rt, res.code, len(res.stdout), res.stderr)
		}
		sums[rt] = fmt.Sprintf("%x", sha256.Sum256([]byte(res.stdout)))
	}
	if sums["runc"] != sums["kata"] {
		t.Errorf("1 MiB output differs: runc %s, kata %s", sums["runc"], sums["kata"])
	}
}

func TestKataStdin(t *testing.T) {
	requireKata(t)
	res := docker(t, "x\ny\n", "run", "-i", "--rm", "--runtime=kata", "busybox", "sh", "-c", "cat; echo done")
	if res.code != 0 || res.stdout != "x\ny\ndone\n" {
		t.Errorf("echo x | docker run -i: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestKataProcessSettings(t *testing.T) {
	requireKata(t)
	args := []string{"run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "65534:65534", "-h", "vmhost", "busybox",
		"sh", "-c", `echo "$FOO"; pwd; id -u; id -g; hostname`}
	want := "bar baz\n/tmp\n65534\n65534\nvmhost\n"
	for _, rt := range []string{"runc", "kata"} {
		res := docker(t, "", append([]string{args[0], "--runtime=" + rt}, args[1:]...)...)
		if res.code != 0 || res.stdout != want {
			t.Errorf("%s: exit %d, stdout %q (want %q), stderr %q", rt, res.code, res.stdout, want, res.stderr)
		}
	}
}

func TestKataBindMountReadWrite(t *testing.T) {
	requireKata(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := docker(t, "", "run", "--rm", "--runtime=kata", "-v", dir+":/data", "busybox", "sh", "-c", "cat /data/in.txt; echo from-guest > /data/out.txt")
	if res.code != 0 || res.stdout != "from-host" {
		t.Fatalf("bind mount read: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if out, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(out) != "from-guest\n" {
		t.Errorf("bind mount write: host sees %q, %v", out, err)
	}
}

func TestKataNamedVolumePersists(t *testing.T) {
	requireKata(t)
	vol := fmt.Sprintf("kata-vol-%d", time.Now().UnixNano())
	defer docker(t, "", "volume", "rm", "-f", vol)
	if res := docker(t, "", "run", "--rm", "--runtime=kata", "-v", vol+":/v", "busybox", "sh", "-c", "echo kept > /v/f"); res.code != 0 {
		t.Fatalf("writing the volume: %s", res.stderr)
	}
	res := docker(t, "", "run", "--rm", "--runtime=kata", "-v", vol+":/v", "busybox", "cat", "/v/f")
	if res.code != 0 || res.stdout != "kept\n" {
		t.Errorf("second container reads %q (exit %d, %s)", res.stdout, res.code, res.stderr)
	}
}

func TestKataReadOnlyRootfs(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--read-only", "busybox", "sh", "-c", "touch /x && echo wrote || echo refused")
	if res.stdout != "refused\n" {
		t.Errorf("--read-only: stdout %q, stderr %q", res.stdout, res.stderr)
	}
}

func TestKataHostsFileShared(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--add-host", "example.test:10.1.2.3", "busybox", "sh", "-c", "grep example.test /etc/hosts; cat /etc/hostname")
	if res.code != 0 || !strings.Contains(res.stdout, "10.1.2.3") {
		t.Errorf("/etc/hosts from Docker: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestKataStopRunsTrap(t *testing.T) {
	requireKata(t)
	name := fmt.Sprintf("kata-stop-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "busybox", "sh", "-c",
		`trap "echo got-term; exit 3" TERM; echo ready; while true; do sleep 0.2; done`); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	waitForLog(t, name, "ready")
	if res := docker(t, "", "stop", "-t", "30", name); res.code != 0 {
		t.Fatalf("docker stop: %s", res.stderr)
	}
	if code := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.ExitCode}}", name).stdout); code != "3" {
		t.Errorf("exit code after docker stop = %s, want the trap's 3", code)
	}
	if logs := docker(t, "", "logs", name); !strings.Contains(logs.stdout, "got-term") {
		t.Errorf("docker logs after exit = %q, want the trap's output", logs.stdout)
	}
}

func TestKataRestartOnFailure(t *testing.T) {
	requireKata(t)
	name := fmt.Sprintf("kata-restart-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 7"); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		st := strings.Fields(docker(t, "", "inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", name).stdout)
		if len(st) == 3 && st[0] == "2" && st[1] == "exited" {
			if st[2] != "7" {
				t.Errorf("final exit code %s, want 7", st[2])
			}
			if n := strings.Count(docker(t, "", "logs", name).stdout, "run\n"); n != 3 {
				t.Errorf("docker logs shows %d runs, want 3", n)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("the container did not end after 2 restarts: %s", docker(t, "", "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", name).stdout)
}

// TestKataLeavesNothingBehind runs 20 containers in a row and checks that no QEMU, mount or state
// directory is left.
func TestKataLeavesNothingBehind(t *testing.T) {
	requireKata(t)
	for i := 0; i < 20; i++ {
		if res := docker(t, "", "run", "--rm", "--runtime=kata", "busybox", "true"); res.code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, res.code, res.stderr)
		}
	}
	assertNoLeftovers(t)
}

func assertNoLeftovers(t *testing.T) {
	t.Helper()
	var left []string
	for i := 0; i < 50; i++ { // the shim tears down asynchronously after docker run returns
		left = leftovers()
		if len(left) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("left behind: %s", strings.Join(left, "; "))
}

// leftovers lists the QEMUs, mounts and container state directories of the runtime's state
// directory; clones waiting in a pool of clones ([factory] pool) are not leftovers.
func leftovers() []string {
	stateDir := testenv.StateDir
	var waiting []string
	slots, _ := runtimecache.PoolSlots(runtimecache.Dir(stateDir))
	for _, s := range slots {
		if s.State == runtimecache.SlotStateReady {
			waiting = append(waiting, s.Dir+"/")
		}
	}
	isWaiting := func(line string) bool {
		return slices.ContainsFunc(waiting, func(dir string) bool { return strings.Contains(line, dir) })
	}
	var left []string
	out, _ := exec.Command("pgrep", "-af", "qemu-system.*"+stateDir).Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !isWaiting(line) {
			left = append(left, "QEMU: "+line)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, stateDir) && !isWaiting(line) {
			left = append(left, "mount: "+line)
		}
	}
	if entries, _ := os.ReadDir(stateDir); len(entries) > 0 {
		left = append(left, fmt.Sprintf("%d entries in %s", len(entries), stateDir))
	}
	return left
}

func waitForLog(t *testing.T, name, want string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if strings.Contains(docker(t, "", "logs", name).stdout, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("container %s never printed %q", name, want)
}

// TestKataQEMUKilled: a VM that dies under a running container ends the container, non-zero,
// within seconds, and leaves nothing behind.
func TestKataQEMUKilled(t *testing.T) {
	requireKata(t)
	name := fmt.Sprintf("kata-qemu-kill-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "busybox", "sleep", "600"); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	pid := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.Pid}}", name).stdout)
	comm, err := os.ReadFile("/proc/" + pid + "/comm")
	if err != nil || !strings.HasPrefix(string(comm), "qemu") {
		t.Fatalf("the task pid %s is not QEMU (%q, %v)", pid, comm, err)
	}
	if res := run(t, "kill", "-9", pid); res.code != 0 {
		t.Fatalf("kill QEMU: %s", res.stderr)
	}
	start := time.Now()
	code := strings.TrimSpace(docker(t, "", "wait", name).stdout)
	if code == "0" || code == "" {
		t.Errorf("exit code after QEMU was killed = %q, want non-zero", code)
	}
	if waited := time.Since(start); waited > 15*time.Second {
		t.Errorf("the container took %s to exit after QEMU died", waited)
	}
	if res := docker(t, "", "rm", name); res.code != 0 {
		t.Errorf("docker rm after QEMU died: %s", res.stderr)
	}
	assertNoLeftovers(t)
}

// TestKataShimKilled: when the shim dies, containerd's delete path (the shim binary's `delete`
// action) powers the VM off and removes the mounts and the state.
func TestKataShimKilled(t *testing.T) {
	requireKata(t)
	name := fmt.Sprintf("kata-shim-kill-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "busybox", "sleep", "600"); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	id := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.Id}}", name).stdout)
	shim := run(t, "pgrep", "-f", "containerd-shim-kata-v2 .*-id "+id)
	if shim.code != 0 {
		t.Fatalf("no shim process found for %s", id)
	}
	for _, pid := range strings.Fields(shim.stdout) {
		run(t, "kill", "-9", pid)
	}
	code := strings.TrimSpace(docker(t, "", "wait", name).stdout)
	if code == "0" || code == "" {
		t.Errorf("exit code after the shim was killed = %q, want non-zero", code)
	}
	if res := docker(t, "", "rm", name); res.code != 0 {
		t.Errorf("docker rm after the shim died: %s", res.stderr)
	}
	assertNoLeftovers(t)
}

// TestKataVirtioFS runs the same checks over virtio-fs instead of virtio-9p.
func TestKataVirtioFS(t *testing.T) {
	k := requireKata(t)
	unregister, err := k.RegisterVariant("kata-virtiofs", func(c *config.Config) { c.Hypervisor.SharedFS = config.SharedFSVirtiofs })
	if err != nil {
		t.Fatal(err)
	}
	defer unregister()
	dir := t.TempDir()
	res := docker(t, "", "run", "--rm", "--runtime=kata-virtiofs", "-v", dir+":/data", "busybox", "sh", "-c",
		"grep -c virtiofs /proc/mounts; uname -r; echo hi > /data/f")
	if res.code != 0 || !strings.Contains(res.stdout, k.GuestKernel) {
		t.Fatalf("virtio-fs run: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "f")); string(out) != "hi\n" {
		t.Errorf("write through virtio-fs: host sees %q", out)
	}
	assertNoLeftovers(t)
	if out, _ := exec.Command("pgrep", "-af", "virtiofsd").Output(); strings.Contains(string(out), testenv.StateDir) {
		t.Errorf("virtiofsd left running: %s", out)
	}
}

// TestKataStatsAndPause: docker stats shows the guest's figures; pause and unpause work.
func TestKataStatsAndPause(t *testing.T) {
	requireKata(t)
	name := fmt.Sprintf("kata-stats-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	if res := docker(t, "", "run", "-d", "--name", name, "--runtime=kata", "busybox", "sh", "-c", "echo ready; while true; do sleep 0.2; done"); res.code != 0 {
		t.Fatalf("docker run -d: %s", res.stderr)
	}
	waitForLog(t, name, "ready")
	res := docker(t, "", "stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", name)
	if res.code != 0 || strings.HasPrefix(res.stdout, "0B") || strings.HasSuffix(strings.TrimSpace(res.stdout), "|0") {
		t.Errorf("docker stats = %q (exit %d, %s), want non-zero memory and pids", res.stdout, res.code, res.stderr)
	}
	if res := docker(t, "", "pause", name); res.code != 0 {
		t.Fatalf("docker pause: %s", res.stderr)
	}
	if st := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.Status}}", name).stdout); st != "paused" {
		t.Errorf("status after pause = %q", st)
	}
	if res := docker(t, "", "unpause", name); res.code != 0 {
		t.Fatalf("docker unpause: %s", res.stderr)
	}
	if res := docker(t, "", "kill", name); res.code != 0 {
		t.Errorf("docker kill after unpause: %s", res.stderr)
	}
}

// TestKataResources: --memory sizes the VM (the container sees it in /proc/meminfo), --cpus sets
// the vCPUs (nproc agrees), and an OOM in the guest shows as OOMKilled.
func TestKataResources(t *testing.T) {
	requireKata(t)
	res := docker(t, "", "run", "--rm", "--runtime=kata", "--memory", "300m", "--cpus", "2", "busybox", "sh", "-c",
		"grep MemTotal /proc/meminfo; nproc")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var memKB, nproc int
	fmt.Sscanf(res.stdout, "MemTotal: %d kB\n%d", &memKB, &nproc)
	// 300 MiB plus the guest overhead, less what the guest kernel reserves for itself.
	if memKB < 280*1024 || memKB > 300*1024+256*1024 {
		t.Errorf("MemTotal = %d kB with --memory 300m; output %q", memKB, res.stdout)
	}
	if want := min(2, runtimeNumCPU()); nproc != want {
		t.Errorf("nproc = %d with --cpus 2, want %d", nproc, want)
	}

	name := fmt.Sprintf("kata-oom-%d", time.Now().UnixNano())
	defer docker(t, "", "rm", "-f", name)
	// A shell variable that keeps doubling eats the guest's memory until the OOM killer strikes.
	docker(t, "", "run", "--name", name, "--runtime=kata", "--memory", "128m", "busybox", "sh", "-c",
		`x=0123456789abcdef; while true; do x="$x$x"; done`)
	st := strings.TrimSpace(docker(t, "", "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", name).stdout)
	if st != "true 137" {
		t.Errorf("OOMKilled/exit code = %q, want \"true 137\"", st)
	}
}

// HOME comes from the image's /etc/passwd when the spec has none, as runc sets it: for the
// container's process and for docker exec, as root and as another user.
func TestKataHomeLikeRunc(t *testing.T) {
	requireKata(t)
	for _, c := range [][]string{{}, {"-u", "65534"}, {"-u", "4242"}, {"-e", "HOME=/data"}} {
		got := map[string]string{}
		for _, rt := range []string{"runc", "kata"} {
			args := append(append([]string{"run", "--rm", "--runtime=" + rt}, c...), "busybox", "sh", "-c", `echo "$HOME"`)
			res := docker(t, "", args...)
			if res.code != 0 {
				t.Fatalf("%s %v: docker run: exit %d: %s", rt, c, res.code, res.stderr)
			}
			got[rt] = res.stdout
		}
		if got["kata"] != got["runc"] || strings.TrimSpace(got["kata"]) == "" {
			t.Errorf("docker run %v: HOME runc %q, kata %q", c, got["runc"], got["kata"])
		}
	}
	// docker exec, as root and as another user, against the same exec in a runc container.
	got := map[string]map[string]string{}
	for _, rt := range []string{"runc", "kata"} {
		name := fmt.Sprintf("kata-home-%s-%d", rt, time.Now().UnixNano())
		if res := docker(t, "", "run", "-d", "--name", name, "--runtime="+rt, "busybox", "sleep", "600"); res.code != 0 {
			t.Fatalf("%s: docker run -d: %s", rt, res.stderr)
		}
		defer docker(t, "", "rm", "-f", name)
		got[rt] = map[string]string{}
		for _, user := range []string{"0", "65534"} {
			res := docker(t, "", "exec", "-u", user, name, "sh", "-c", `echo "$HOME"`)
			if res.code != 0 {
				t.Fatalf("%s: docker exec -u %s: exit %d: %s", rt, user, res.code, res.stderr)
			}
			got[rt][user] = res.stdout
		}
	}
	for _, user := range []string{"0", "65534"} {
		if got["kata"][user] != got["runc"][user] || strings.TrimSpace(got["kata"][user]) == "" {
			t.Errorf("docker exec -u %s: HOME runc %q, kata %q", user, got["runc"][user], got["kata"][user])
		}
	}
	if got["kata"]["0"] != "/root\n" {
		t.Errorf("docker exec as root: HOME %q, want /root", got["kata"]["0"])
	}
}
