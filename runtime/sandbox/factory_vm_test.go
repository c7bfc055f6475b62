package sandbox

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/agentproto"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// TestVMTemplate builds a template from the real guest image and agent, restores two clones
// from it, runs a container in each, and checks what a clone must not share with its template
// or its siblings: random bytes and the clock. Then it breaks the template and expects a cold
// boot.
func TestVMTemplate(t *testing.T) {
	cfg := templateTestConfig(t)
	logf, count := recordLog(t)
	logged := func(sub string) bool { return count(sub) > 0 }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// prepare makes a container's rootfs; start starts its VM (from any goroutine).
	prepare := func(id string) (Options, hypervisor.Config) {
		opts := Options{ID: id, Spec: &specs.Spec{}, Config: cfg, Logf: logf}
		stateDir := filepath.Join(cfg.Runtime.StateDir, id)
		buildBusyboxRootfs(t, filepath.Join(stateDir, sharedDirName, "rootfs"))
		vc := vmConfig(opts, stateDir, hypervisor.AccelTCG, "")
		vc.Logf = logf
		return opts, vc
	}
	start := func(opts Options, vc hypervisor.Config) (*hypervisor.VM, *agentproto.Client, error) {
		started := time.Now()
		s := &Sandbox{ID: opts.ID, StateDir: filepath.Dir(vc.StateDir)}
		err := s.startVM(ctx, opts, vc, "", logf)
		vm, agent := s.VM, s.Agent
		if vm != nil {
			t.Cleanup(func() {
				if agent != nil {
					agent.Close()
				}
				vm.Stop(context.Background())
				os.RemoveAll(filepath.Dir(vc.StateDir))
			})
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", opts.ID, err)
		}
		t.Logf("%s: agent ready %s after the start", opts.ID, time.Since(started).Round(time.Millisecond))
		return vm, agent, nil
	}
	boot := func(id string) (*hypervisor.VM, *agentproto.Client) {
		t.Helper()
		vm, agent, err := start(prepare(id))
		if err != nil {
			t.Fatal(err)
		}
		return vm, agent
	}
	// What a container sees: 16 random bytes, then the wall clock.
	probe := []string{"sh", "-c", "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; adjtimex | grep tv_"}

	// The first two containers, started together, build the template once and both run in
	// clones of it.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, id := range []string{"first-a", "first-b"} {
		opts, vc := prepare(id)
		wg.Go(func() { _, _, errs[i] = start(opts, vc) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := count("built the VM template"); n != 1 {
		t.Fatalf("two concurrent first containers built %d templates", n)
	}
	if logged("VM template not used") {
		t.Fatalf("a first container booted cold")
	}
	// The clones' clocks would lag by the template's age.
	time.Sleep(3 * time.Second)
	clones := map[string]string{}
	for _, id := range []string{"clone1", "clone2"} {
		vm, agent := boot(id)
		if logged("VM template not used") {
			t.Fatalf("%s was not a clone", id)
		}
		before := time.Now()
		out := runContainer(ctx, t, agent, id, probe)
		after := time.Now()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || len(lines[0]) != 32 {
			t.Fatalf("%s: unexpected output %q; console:\n%s", id, out, vm.Console())
		}
		clones[id] = lines[0]
		guest := parseAdjtimex(t, lines[1:])
		if guest.Before(before.Add(-time.Second)) || guest.After(after.Add(time.Second)) {
			t.Errorf("%s: the guest's clock reads %s, the host's was between %s and %s",
				id, guest.Format(time.RFC3339Nano), before.Format(time.RFC3339Nano), after.Format(time.RFC3339Nano))
		}
		t.Logf("%s: random %s, clock off by %s", id, lines[0], guest.Sub(before).Round(time.Millisecond))
	}
	if clones["clone1"] == clones["clone2"] {
		t.Errorf("two clones read the same random bytes: %s", clones["clone1"])
	}

	// A template whose memory file is gone is not used: the container boots cold, and the
	// template is removed so that the next container rebuilds it.
	key, err := templateKey(templateConfig(vmConfig(Options{ID: "x", Spec: &specs.Spec{}, Config: cfg}, "/x", hypervisor.AccelTCG, ""), ""))
	if err != nil {
		t.Fatal(err)
	}
	tdir := filepath.Join(runtimecache.TemplatesDir(runtimecache.Dir(cfg.Runtime.StateDir)), key)
	if err := os.Remove(filepath.Join(tdir, runtimecache.TemplateMemory)); err != nil {
		t.Fatalf("the template is not where expected: %v", err)
	}
	_, agent := boot("cold")
	if !logged("VM template not used") {
		t.Errorf("a template without its memory file was used")
	}
	if out := runContainer(ctx, t, agent, "cold", []string{"echo", "cold"}); out != "cold\n" {
		t.Errorf("the cold-booted container printed %q", out)
	}
	if _, err := os.Stat(tdir); !os.IsNotExist(err) {
		t.Errorf("the broken template %s is still there: %v", tdir, err)
	}
}

// templateTestConfig needs what a VM of the real guest image needs and returns a configuration
// with templating on, under a short temporary state directory (the template VM's sockets live
// below <state>.cache/template/.build-<key>/vm).
func templateTestConfig(t *testing.T) *config.Config {
	t.Helper()
	testreq.Short(t, "boots VMs")
	testreq.Root(t)
	qemu := testreq.QEMU(t)
	requireStaticBusybox(t)
	img := testguest.Get(t)
	base, err := os.MkdirTemp("", "kf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	cfg := config.Default()
	cfg.Hypervisor.Path, cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd = qemu, img.Vmlinux, img.Initrd
	cfg.Hypervisor.Firmware = testreq.QbootROM
	cfg.Hypervisor.Accelerator = config.AccelTCG
	cfg.Hypervisor.MemoryMiB = 256
	cfg.Agent.BootTimeout = config.Duration(90 * time.Second)
	cfg.Runtime.StateDir = filepath.Join(base, "s")
	cfg.Factory.Template = true
	return cfg
}

// recordLog returns a logf that logs to t and keeps the lines, and a count of the kept lines
// that contain a string.
func recordLog(t *testing.T) (logf func(string, ...any), count func(sub string) int) {
	var mu sync.Mutex
	var logs []string
	logf = func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Log(msg)
		mu.Lock()
		logs = append(logs, msg)
		mu.Unlock()
	}
	count = func(sub string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, l := range logs {
			if strings.Contains(l, sub) {
				n++
			}
		}
		return n
	}
	return logf, count
}

// runContainer runs args in a container of the VM (rootfs/ of its share) and returns stdout.
func runContainer(ctx context.Context, t *testing.T, c *agentproto.Client, id string, args []string) string {
	t.Helper()
	return runContainerIn(ctx, t, c, id, args, agentproto.Share{Type: agentproto.Share9P, Tag: agentproto.SharedTag, GuestPath: agentproto.SharedGuestDir}, nil)
}

// runContainerIn is runContainer with the share given, and more mounts.
func runContainerIn(ctx context.Context, t *testing.T, c *agentproto.Client, id string, args []string, share agentproto.Share, mounts []specs.Mount) string {
	t.Helper()
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: path.Join(agentproto.SharedGuestDir, "rootfs")},
		Process: &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		}},
		Mounts: append([]specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}}, mounts...),
	}
	req := agentproto.CreateContainerRequest{ID: id, Spec: spec, Shares: []agentproto.Share{share}}
	if err := c.CreateContainer(ctx, req); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	out, err := c.Stdio(ctx, id, "", agentproto.StreamStdout)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := c.Start(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := c.Wait(ctx, id, ""); err != nil || status != 0 {
		t.Fatalf("%s exited %d (%v); stdout %q", id, status, err, b)
	}
	return string(b)
}

// parseAdjtimex reads busybox adjtimex's "time.tv_sec:" and "time.tv_usec:" lines.
func parseAdjtimex(t *testing.T, lines []string) time.Time {
	t.Helper()
	var sec, usec int64
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("adjtimex printed %q", l)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("adjtimex printed %q", l)
		}
		switch f[0] {
		case "time.tv_sec:":
			sec = n
		case "time.tv_usec:":
			usec = n
		}
	}
	return time.Unix(sec, usec*1000)
}

// requireStaticBusybox needs a busybox without an ELF interpreter: the rootfs has no libc.
func requireStaticBusybox(t *testing.T) {
	t.Helper()
	f, err := elf.Open("/bin/busybox")
	if err != nil {
		testreq.Skipf(t, "no static /bin/busybox (apt-get install busybox-static): %v", err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			testreq.Skipf(t, "/bin/busybox is dynamically linked (apt-get install busybox-static)")
		}
	}
}

// buildBusyboxRootfs makes a rootfs of busybox and its applets at dir.
func buildBusyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", a))
		}
	}
}
