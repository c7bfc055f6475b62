package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-containers/govmm/qemu"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"golang.org/x/sys/unix"
)

// The test binary doubles as a fake QEMU (records its arguments) and as a
// long-running process whose command line can carry a marker.
const (
	envFakeQEMUArgs = "HV_TEST_FAKE_QEMU_ARGS"
	envFakeQEMUFail = "HV_TEST_FAKE_QEMU_FAIL"
	envSleeper      = "HV_TEST_SLEEPER"
)

func TestMain(m *testing.M) {
	if out := os.Getenv(envFakeQEMUArgs); out != "" {
		b, _ := json.Marshal(os.Args[1:])
		_ = os.WriteFile(out, b, 0o600)
		if msg := os.Getenv(envFakeQEMUFail); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envSleeper) != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testConfig returns a valid Config whose files exist.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	share := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{
		ID:             "0123456789abcdef",
		QEMUPath:       mk("qemu"),
		Kernel:         mk("vmlinux"),
		Initrd:         mk("initrd.img"),
		Firmware:       mk("qboot.rom"),
		MachineType:    "q35",
		Accelerator:    AccelTCG,
		VCPUs:          1,
		MemoryMiB:      256,
		StateDir:       filepath.Join(dir, "vm"),
		Shares:         []Share{{Tag: "rootfs", HostPath: share, Type: Share9P}},
		VirtiofsDaemon: mk("virtiofsd"),
	}
}

// flatArgs is the part of the command line the devices contribute; it
// needs no root, unlike running govmm's launcher.
func flatArgs(t *testing.T, c Config) (qemu.Config, []string) {
	t.Helper()
	q, err := qemuConfig(context.Background(), &c, newLayout(c.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, d := range q.Devices {
		if d.Valid() {
			args = append(args, d.QemuParams(&q)...)
		}
	}
	return q, args
}

// hasPair reports whether args contain flag immediately followed by value.
func hasPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

func TestQEMUConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		check  func(t *testing.T, c Config, q qemu.Config, args []string)
	}{
		{"tcg uses the default cpu model", func(c *Config) {}, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.CPUModel != "" || q.Machine.Acceleration != "tcg" || q.Machine.Type != "q35" {
				t.Errorf("cpu %q machine %+v", q.CPUModel, q.Machine)
			}
		}},
		{"kvm uses the host cpu", func(c *Config) { c.Accelerator = AccelKVM }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.CPUModel != "host" || q.Machine.Acceleration != "kvm" {
				t.Errorf("cpu %q machine %+v", q.CPUModel, q.Machine)
			}
		}},
		{"firmware", func(c *Config) {}, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.Bios != c.Firmware {
				t.Errorf("bios %q", q.Bios)
			}
		}},
		{"no firmware", func(c *Config) { c.Firmware = "" }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.Bios != "" {
				t.Errorf("bios %q", q.Bios)
			}
		}},
		{"9p share and plain memory", func(c *Config) {}, func(t *testing.T, c Config, q qemu.Config, args []string) {
			want := "local,id=fs0,path=" + c.Shares[0].HostPath + ",security_model=none,multidevs=remap"
			if !hasPair(args, "-fsdev", want) || !hasPair(args, "-device", "virtio-9p-pci,disable-modern=false,fsdev=fs0,mount_tag=rootfs") {
				t.Errorf("9p device missing: %q", args)
			}
			if q.Memory.Size != "256M" || slices.Contains(args, "-numa") {
				t.Errorf("memory %+v args %q", q.Memory, args)
			}
		}},
		{"virtiofs share and shared memory", func(c *Config) { c.Shares[0].Type = ShareVirtiofs }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			sock := filepath.Join(c.StateDir, "vfs0.sock")
			if !hasPair(args, "-chardev", "socket,id=vfschr0,path="+sock) || !hasPair(args, "-device", "vhost-user-fs-pci,chardev=vfschr0,tag=rootfs") {
				t.Errorf("virtio-fs device missing: %q", args)
			}
			// govmm must not add its own (unshared) memory backend.
			if q.Memory.Size != "" || !hasPair(args, "-m", "256M") ||
				!hasPair(args, "-object", "memory-backend-memfd,id=mem0,size=256M,share=on") || !hasPair(args, "-numa", "node,memdev=mem0") {
				t.Errorf("memory %+v args %q", q.Memory, args)
			}
		}},
		{"agent channel and console", func(c *Config) { c.Shares = nil }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			agent := filepath.Join(c.StateDir, "agent.sock")
			for _, p := range [][2]string{
				{"-device", "virtio-serial-pci,disable-modern=false,id=vserial0"},
				{"-device", "virtserialport,bus=vserial0.0,chardev=agentchr0,id=agent0,name=agent.0"},
				{"-chardev", "socket,id=agentchr0,path=" + agent + ",server=on,wait=off"},
				{"-device", "isa-serial,chardev=console0,id=serial0"},
				{"-chardev", "socket,id=console0,path=" + filepath.Join(c.StateDir, "console.sock") + ",server=on,wait=off"},
			} {
				if !hasPair(args, p[0], p[1]) {
					t.Errorf("missing %s %s in %q", p[0], p[1], args)
				}
			}
		}},
		{"knobs", func(c *Config) {}, func(t *testing.T, c Config, q qemu.Config, args []string) {
			k := q.Knobs
			// Not daemonized: QEMU is pid 1 of its own pid namespace
			// (confine.go), and writes no pid file of its own.
			if k.Daemonize || !k.Mlock || k.Realtime || !k.NoDefaults || !k.NoUserConfig || !k.NoGraphic || !k.NoReboot {
				t.Errorf("knobs %+v", k)
			}
			if q.PidFile != "" || q.Name != "kata-"+c.ID {
				t.Errorf("pidfile %q name %q", q.PidFile, q.Name)
			}
		}},
		{"kernel parameters", func(c *Config) { c.KernelParams = []string{" loglevel=7 init=/x ", "", "agent.debug=1"} }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			p := q.Kernel.Params
			if !strings.HasPrefix(p, "console=ttyS0 panic=-1 quiet ") || !strings.HasSuffix(p, " nomodeset memhp_default_state=online swiotlb=noforce loglevel=7 init=/x agent.debug=1") {
				t.Errorf("params %q", p)
			}
		}},
		{"memory hot-plug", func(c *Config) { c.MaxMemoryMiB = 4096 }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.Memory.Size != "256M" || q.Memory.Slots != MemorySlots || q.Memory.MaxMem != "4096M" {
				t.Errorf("memory %+v", q.Memory)
			}
		}},
		{"no room for a memory block", func(c *Config) { c.MaxMemoryMiB = 300 }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if q.Memory.Slots != 0 || q.Memory.MaxMem != "" {
				t.Errorf("memory %+v: hot-plug slots without room for one block", q.Memory)
			}
		}},
		{"debug drops quiet", func(c *Config) { c.Debug = true }, func(t *testing.T, c Config, q qemu.Config, args []string) {
			if strings.Contains(q.Kernel.Params, "quiet") {
				t.Errorf("params %q", q.Kernel.Params)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.mutate(&c)
			if err := c.validate(); err != nil {
				t.Fatal(err)
			}
			q, args := flatArgs(t, c)
			tt.check(t, c, q, args)
		})
	}
}

func TestKernelCmdlineTooLong(t *testing.T) {
	if _, err := kernelCmdline([]string{strings.Repeat("x", maxCmdline)}, false); err == nil || !strings.Contains(err.Error(), "kernel_params") {
		t.Fatalf("expected a length error, got %v", err)
	}
}

// launchArgs runs govmm's launcher on the fake QEMU and returns the
// command line it built. govmm sets credentials, so this needs root.
func launchArgs(t *testing.T, c Config) []string {
	t.Helper()
	q, err := qemuConfig(context.Background(), &c, newLayout(c.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	return govmmArgs(t, q)
}

// govmmArgs runs govmm's launcher for q on the fake QEMU and returns the
// command line it built.
func govmmArgs(t *testing.T, q qemu.Config) []string {
	t.Helper()
	testreq.Root(t) // govmm's launcher sets process credentials
	out := filepath.Join(t.TempDir(), "args.json")
	t.Setenv(envFakeQEMUArgs, out)
	q.Path = os.Args[0]
	if msg, err := qemu.LaunchQemu(q, nil); err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	if err := json.Unmarshal(b, &args); err != nil {
		t.Fatal(err)
	}
	return args
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *Config)
		want    [][]string // each a run of consecutive arguments
		notWant []string
	}{
		{"tcg with qboot and 9p", func(c *Config) {}, [][]string{
			{"-machine", "q35,accel=tcg"}, {"-bios", "BIOS"}, {"-kernel", "KERNEL", "-initrd", "INITRD", "-append"},
			{"-qmp", "unix:STATE/qmp.sock,server=on,wait=off"}, {"-m", "256M"}, {"-smp", "1"},
			{"-nodefaults"}, {"-no-user-config"}, {"-nographic"}, {"--no-reboot"},
			{"-device", "virtio-9p-pci,disable-modern=false,fsdev=fs0,mount_tag=rootfs"},
			// A cold boot keeps QEMU's translation buffer: only templates and clones get a smaller one.
		}, []string{"-cpu", "-realtime", "mlock=off", "-daemonize", "-pidfile", "-accel"}},
		{"kvm without firmware", func(c *Config) { c.Accelerator = AccelKVM; c.Firmware = "" }, [][]string{
			{"-machine", "q35,accel=kvm"}, {"-cpu", "host"},
		}, []string{"-bios", "-realtime"}},
		// Several vCPUs under TCG share one host thread (tcgOptions); under KVM each has its own.
		{"tcg with 2 vCPUs", func(c *Config) { c.VCPUs = 2 }, [][]string{
			{"-machine", "q35"}, {"-accel", "tcg,thread=single"}, {"-smp", "2"},
		}, []string{"q35,accel=tcg"}},
		{"kvm with 2 vCPUs", func(c *Config) { c.Accelerator = AccelKVM; c.VCPUs = 2 }, [][]string{
			{"-machine", "q35,accel=kvm"}, {"-smp", "2"},
		}, []string{"-accel"}},
		{"virtiofs", func(c *Config) { c.Shares[0].Type = ShareVirtiofs; c.VCPUs = 2 }, [][]string{
			{"-m", "256M", "-object", "memory-backend-memfd,id=mem0,size=256M,share=on", "-numa", "node,memdev=mem0"},
			{"-device", "vhost-user-fs-pci,chardev=vfschr0,tag=rootfs"}, {"-smp", "2"},
		}, []string{"-fsdev", "memory-backend-ram,id=dimm1,size=256M"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.mutate(&c)
			args := launchArgs(t, c)
			t.Logf("command line: %q", args)
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			r := strings.NewReplacer("STATE", c.StateDir, "BIOS", c.Firmware, "KERNEL", c.Kernel, "INITRD", c.Initrd)
			for _, w := range tt.want {
				run := "\x00" + r.Replace(strings.Join(w, "\x00")) + "\x00"
				if !strings.Contains(joined, run) {
					t.Errorf("command line lacks %q:\n%q", w, args)
				}
			}
			for _, nw := range tt.notWant {
				if slices.Contains(args, nw) {
					t.Errorf("command line has %q:\n%q", nw, args)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"valid", func(c *Config) {}, ""},
		{"empty id", func(c *Config) { c.ID = "" }, "VM id"},
		{"id with slash", func(c *Config) { c.ID = "../etc" }, "VM id"},
		{"id with comma", func(c *Config) { c.ID = "a,b" }, "VM id"},
		{"long id", func(c *Config) { c.ID = strings.Repeat("a", maxIDLen+1) }, "VM id"},
		{"relative kernel", func(c *Config) { c.Kernel = "vmlinux" }, "absolute"},
		{"missing initrd", func(c *Config) { c.Initrd = "/nonexistent/initrd" }, "initrd"},
		{"no qemu", func(c *Config) { c.QEMUPath = "" }, "QEMUPath"},
		{"unresolved accelerator", func(c *Config) { c.Accelerator = "auto" }, "resolve"},
		{"zero vcpus", func(c *Config) { c.VCPUs = 0 }, "VCPUs"},
		{"tiny memory", func(c *Config) { c.MemoryMiB = 8 }, "MemoryMiB"},
		{"relative state dir", func(c *Config) { c.StateDir = "vm" }, "StateDir"},
		{"state dir at root", func(c *Config) { c.StateDir = "/vm" }, "root"},
		{"state dir too long", func(c *Config) { c.StateDir = "/run/" + strings.Repeat("d", 100) }, "107-byte"},
		{"comma in state dir", func(c *Config) { c.StateDir = "/run/a,b" }, "comma"},
		{"relative netns", func(c *Config) { c.NetNSPath = "ns" }, "absolute"},
		{"several params in one element", func(c *Config) { c.KernelParams = []string{"a=1 b", ""} }, ""},
		{"param with newline", func(c *Config) { c.KernelParams = []string{"a\nb"} }, "line break"},
		{"bad machine", func(c *Config) { c.MachineType = "q35,accel=kvm" }, "machine type"},
		{"bad share type", func(c *Config) { c.Shares[0].Type = "nfs" }, "nfs"},
		{"bad tag", func(c *Config) { c.Shares[0].Tag = "a b" }, "tag"},
		{"duplicate tag", func(c *Config) { c.Shares = append(c.Shares, c.Shares[0]) }, "twice"},
		{"share is a file", func(c *Config) { c.Shares[0].HostPath = c.Kernel }, "not a directory"},
		{"share missing", func(c *Config) { c.Shares[0].HostPath = "/nonexistent/dir" }, "share 0"},
		{"virtiofs without daemon", func(c *Config) {
			c.Shares[0].Type = ShareVirtiofs
			c.VirtiofsDaemon = ""
		}, "VirtiofsDaemon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			tt.mutate(&c)
			err := c.validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("expected an error mentioning %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestStartRejectsInvalidConfigWithoutSideEffects(t *testing.T) {
	c := testConfig(t)
	c.VCPUs = 0
	if _, err := Start(context.Background(), c); err == nil {
		t.Fatal("expected an error")
	}
	if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
		t.Fatalf("state directory created for an invalid config: %v", err)
	}
}

func TestStartRefusesBusyStateDir(t *testing.T) {
	c := testConfig(t)
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(c.StateDir, "qemu.pid")
	if err := os.WriteFile(other, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("expected a busy state directory error, got %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("Start touched another VM's state: %v", err)
	}
}

// TestStartFailureCleansUp runs Start against a fake QEMU that fails, or
// that "succeeds" without starting anything.
func TestStartFailureCleansUp(t *testing.T) {
	testreq.Root(t) // Start makes a network namespace; govmm sets credentials
	tests := []struct {
		name, fail, want string
	}{
		{"qemu fails", "qemu-system-x86_64: -machine q35: unsupported machine", "unsupported machine"},
		{"qemu exits at once", "", "exited right after starting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t)
			c.QEMUPath = os.Args[0]
			t.Setenv(envFakeQEMUArgs, filepath.Join(t.TempDir(), "args.json"))
			t.Setenv(envFakeQEMUFail, tt.fail)
			_, err := Start(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("expected an error mentioning %q, got %v", tt.want, err)
			}
			if _, err := os.Stat(c.StateDir); !os.IsNotExist(err) {
				t.Fatalf("state directory left behind: %v", err)
			}
		})
	}
}

// sleeper starts a long-running process whose command line carries marker.
func sleeper(t *testing.T, marker string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", marker)
	cmd.Env = append(os.Environ(), envSleeper+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func TestCleanup(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		if err := Cleanup(filepath.Join(t.TempDir(), "gone")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refuses bad paths", func(t *testing.T) {
		for _, p := range []string{"", "relative", "/", "/tmp", "/a/../b"} {
			if err := Cleanup(p); err == nil {
				t.Errorf("Cleanup(%q) should fail", p)
			}
		}
	})
	t.Run("refuses a foreign directory", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "important.txt")
		if err := os.WriteFile(keep, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Cleanup(dir); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Fatalf("expected a refusal, got %v", err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Fatal("Cleanup removed a foreign file")
		}
	})
	t.Run("kills our processes and spares others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "vm")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		l := newLayout(dir)
		qemuLike := sleeper(t, "-pidfile="+l.pid) // mentions the state dir, like QEMU
		vfsd := sleeper(t, "virtiofsd")
		stranger := sleeper(t, "unrelated")
		write := func(p, s string) {
			if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(l.pid, fmt.Sprintf("%d\n", qemuLike.Process.Pid))
		if err := writeIdentity(l.vfsPid(0), vfsd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		// A stale record: right pid, wrong start time (a recycled pid).
		st, _ := procStartTime(stranger.Process.Pid)
		write(l.vfsPid(1), fmt.Sprintf("%d %d\n", stranger.Process.Pid, st+1))
		if err := Cleanup(dir); err != nil {
			t.Fatal(err)
		}
		for name, cmd := range map[string]*exec.Cmd{"qemu": qemuLike, "virtiofsd": vfsd} {
			if alive(cmd.Process.Pid) {
				t.Errorf("%s (pid %d) survived Cleanup", name, cmd.Process.Pid)
			}
		}
		if !alive(stranger.Process.Pid) {
			t.Error("Cleanup killed a process whose start time did not match")
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("state directory left behind: %v", err)
		}
		if err := Cleanup(dir); err != nil {
			t.Fatalf("second Cleanup: %v", err)
		}
	})
	t.Run("pid file of a process that is not QEMU", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "vm")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// Our own pid: its command line does not mention dir.
		if err := os.WriteFile(filepath.Join(dir, pidFileName), []byte(fmt.Sprint(os.Getpid())), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Cleanup(dir); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWatchProc(t *testing.T) {
	cmd := sleeper(t, "watched")
	p, err := watchProc(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.exited() {
		t.Fatal("reported exited while running")
	}
	if err := p.signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("done not closed after the process was killed")
	}
	if err := p.signal(unix.SIGTERM); err != nil {
		t.Fatalf("signal after exit should be a no-op: %v", err)
	}
}

func TestReadPidFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		content string
		ok      bool
	}{{"123\n", true}, {"abc", false}, {"0", false}, {"-5", false}} {
		p := filepath.Join(dir, "pid")
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readPidFile(p); (err == nil) != tt.ok {
			t.Errorf("readPidFile(%q): %v", tt.content, err)
		}
	}
}

func TestTCGOptions(t *testing.T) {
	mem := &memoryFile{}
	tests := []struct {
		name   string
		accel  string
		vcpus  int
		memory *memoryFile
		tb     int
		want   string
	}{
		{"tcg, one vCPU", AccelTCG, 1, nil, 0, ""},
		{"tcg, two vCPUs", AccelTCG, 2, nil, 0, ",thread=single"},
		{"tcg, a buffer asked for a cold boot is not used", AccelTCG, 1, nil, 24, ""},
		{"tcg clone with a bounded buffer", AccelTCG, 1, mem, 24, ",tb-size=24"},
		{"tcg clone, two vCPUs, bounded buffer", AccelTCG, 2, mem, 24, ",thread=single,tb-size=24"},
		{"kvm, two vCPUs", AccelKVM, 2, mem, 24, ""},
	}
	for _, tt := range tests {
		c := &Config{Accelerator: tt.accel, VCPUs: tt.vcpus, TCGTranslationMiB: tt.tb, memory: tt.memory}
		if got := tcgOptions(c); got != tt.want {
			t.Errorf("%s: tcgOptions = %q, want %q", tt.name, got, tt.want)
		}
	}
}
