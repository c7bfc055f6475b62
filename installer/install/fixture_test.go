package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/installer/fakedocker"
	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

const guestKernel = "6.1.0-test-amd64"

// fixture is a host in a directory: a prefix, a daemon.json, a fake dockerd, the artifacts and a
// kernel package. Everything is derived from dir, so a helper process rebuilds the same host.
type fixture struct {
	t       testing.TB
	dir     string
	daemon  *fakedocker.Daemon
	loc     dockerd.ConfigLocation
	builds  int
	fetches int
	host    Host
}

func (f *fixture) prefix() string     { return filepath.Join(f.dir, "opt", "kata-deploy") }
func (f *fixture) daemonJSON() string { return filepath.Join(f.dir, "etc", "daemon.json") }
func (f *fixture) artifacts() string  { return filepath.Join(f.dir, "artifacts") }
func (f *fixture) kernelDeb() string  { return filepath.Join(f.dir, "linux-image-test_amd64.deb") }

// stateDir is the runtime's state directory in the fixture's configurations: short (the runtime
// allows 28 bytes), derived from dir, outside it, so that a test never touches the host's.
func (f *fixture) stateDir() string {
	sum := sha256.Sum256([]byte(f.dir))
	return "/tmp/kdt-" + hex.EncodeToString(sum[:6])
}

// newFixture creates the host; daemonJSON nil means no daemon.json.
func newFixture(t testing.TB, daemonJSON []byte) *fixture {
	t.Helper()
	f := openFixture(t, t.TempDir())
	must(t, os.MkdirAll(filepath.Dir(f.daemonJSON()), 0o755))
	if daemonJSON != nil {
		must(t, os.WriteFile(f.daemonJSON(), daemonJSON, 0o644))
	}
	must(t, os.MkdirAll(f.artifacts(), 0o755))
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.ShimName), []byte("#!/bin/sh\n# shim v1\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.artifacts(), layout.AgentName), []byte("agent v1"), 0o755))
	must(t, os.WriteFile(f.kernelDeb(), []byte("kernel package v1"), 0o644))
	must(t, os.WriteFile(filepath.Join(f.dir, "qemu"), []byte("#!/bin/sh\n"), 0o755))
	must(t, f.daemon.Reload(context.Background()))
	t.Cleanup(func() {
		os.RemoveAll(f.stateDir())
		os.RemoveAll(f.stateDir() + ".cache")
	})
	return f
}

// openFixture attaches to a host made by newFixture.
func openFixture(t testing.TB, dir string) *fixture {
	f := &fixture{t: t, dir: dir}
	f.daemon = &fakedocker.Daemon{ConfigPath: f.daemonJSON(), StateDir: dir, Images: []string{"busybox"}, RunOutput: guestKernel + "\n"}
	f.loc = dockerd.ConfigLocation{Path: f.daemonJSON(), Source: dockerd.SourceFlag, Why: "test"}
	f.host = Host{Report: check.Report{CanRunVMContainers: true, Accelerator: "tcg"}, QEMU: hostinfo.QEMU{Path: filepath.Join(dir, "qemu")}}
	return f
}

func (f *fixture) options() InstallOptions {
	return InstallOptions{
		Common: Common{Prefix: f.prefix(), LockPath: filepath.Join(f.dir, "kata-deploy.lock")},
		ArtifactOptions: ArtifactOptions{ArtifactsDir: f.artifacts(), Kernel: f.kernelDeb(),
			KernelCache: filepath.Join(f.dir, "cache"), Version: "test"},
		RuntimeName: "kata",
	}
}

func (f *fixture) statusOptions() StatusOptions { return StatusOptions{Prefix: f.prefix()} }

func (f *fixture) deps() Deps {
	return Deps{
		Preflight: func(context.Context) Host { return f.host },
		Docker: func(context.Context) (Docker, dockerd.ConfigLocation, error) {
			return f.daemon, f.loc, nil
		},
		Containerd: func(_ context.Context, _, config string) (Containerd, error) {
			c := f.ctrd()
			if config != "" && config != c.config {
				return nil, fmt.Errorf("containerd reads %s, not %s", c.config, config)
			}
			return c, nil
		},
		BuildImage: f.build,
		FetchKernel: func(_ context.Context, dir string) (string, error) {
			f.fetches++
			must(f.t, os.MkdirAll(dir, 0o755))
			dst := filepath.Join(dir, "linux-image-fetched_amd64.deb")
			data, err := os.ReadFile(f.kernelDeb())
			if err != nil {
				return "", err
			}
			return dst, os.WriteFile(dst, data, 0o644)
		},
		Executable: func() (string, error) { return filepath.Join(f.artifacts(), "kata-deploy"), nil },
		Now:        time.Now,
		StateDir:   f.stateDir(),
	}
}

// build stands in for guestimage.Build: outputs that depend on the inputs only.
func (f *fixture) build(_ context.Context, o guestimage.Options) (*guestimage.Manifest, error) {
	f.builds++
	kernel, err := os.ReadFile(o.KernelDeb)
	if err != nil {
		return nil, err
	}
	agent, err := os.ReadFile(o.AgentBinary)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	m := &guestimage.Manifest{KernelVersion: guestKernel, KernelSource: filepath.Base(o.KernelDeb)}
	mj, _ := json.Marshal(m)
	for name, data := range map[string][]byte{
		guestimage.VmlinuxName:  append([]byte("vmlinux of "), kernel...),
		guestimage.InitrdName:   append(append([]byte("initrd of "), kernel...), agent...),
		guestimage.ManifestName: mj,
	} {
		if err := os.WriteFile(filepath.Join(o.OutDir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (f *fixture) install(mod func(*InstallOptions)) (*Result, error) {
	o := f.options()
	if mod != nil {
		mod(&o)
	}
	return Install(context.Background(), o, f.deps())
}

func (f *fixture) uninstall(mod func(*UninstallOptions)) (*UninstallResult, error) {
	o := UninstallOptions{Common: f.options().Common}
	if mod != nil {
		mod(&o)
	}
	return Uninstall(context.Background(), o, f.deps())
}

// tree lists every path under the prefix's parent, for "nothing left" checks.
func (f *fixture) tree() []string {
	var paths []string
	root := filepath.Dir(f.prefix())
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			paths = append(paths, strings.TrimPrefix(p, root))
		}
		return nil
	})
	sort.Strings(paths)
	return paths
}

// layout is the layout of the current version, as the manifest records it.
func (f *fixture) layout() layout.Layout {
	f.t.Helper()
	m, err := manifest.Load(f.prefix())
	if err != nil {
		f.t.Fatal(err)
	}
	return layout.Layout{Prefix: f.prefix(), Version: m.Current}
}

func (f *fixture) file(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return data
}

func (f *fixture) loaded() bool {
	_, ok := f.daemon.State().Runtimes["kata"]
	return ok
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The fault-injection helper: the test binary re-executed runs one install or uninstall on a
// fixture and kills itself with SIGKILL after the named step.
const helperEnv = "KATA_DEPLOY_INSTALL_TEST_HELPER"

type helperJob struct {
	Dir, Op, Step, Engine string
	From, KataDir         string
	Force                 bool
}

func TestMain(m *testing.M) {
	fakedocker.Serve() // the fake dockerd process of TestHostileDockerd
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(runHelper(spec))
	}
	os.Exit(m.Run())
}

func runHelper(spec string) int {
	var job helperJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f := openFixture(&testing.T{}, job.Dir)
	o := f.options()
	o.Engine = job.Engine
	if job.Force {
		o.Replace = ReplaceAll
	}
	if job.From != "" {
		o.From, o.KataDir, o.ArtifactsDir, o.Kernel = job.From, job.KataDir, "", ""
	}
	o.AfterStep = func(step string) {
		if step == job.Step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	var err error
	switch job.Op {
	case "install":
		_, err = Install(context.Background(), o, f.deps())
	case "upgrade":
		_, err = Upgrade(context.Background(), UpgradeOptions{Common: o.Common, ArtifactOptions: o.ArtifactOptions}, f.deps())
	case "rollback":
		_, err = Rollback(context.Background(), RollbackOptions{Common: o.Common}, f.deps())
	default:
		_, err = Uninstall(context.Background(), UninstallOptions{Common: o.Common, IgnoreInUse: job.Force}, f.deps())
	}
	fmt.Fprintf(os.Stderr, "helper: step %q not reached (err %v)\n", job.Step, err)
	return 3
}

// killAfter runs op on the fixture in a child process killed by SIGKILL after step.
func (f *fixture) killAfter(t *testing.T, op, step string) {
	t.Helper()
	f.killAfterWith(t, op, step, "")
}

// killAfterWith is killAfter with an engine.
func (f *fixture) killAfterWith(t *testing.T, op, step, engine string) {
	t.Helper()
	f.killJob(t, helperJob{Dir: f.dir, Op: op, Step: step, Engine: engine})
}

// killAfterFrom kills an install --from tarball --force after step.
func (f *fixture) killAfterFrom(t *testing.T, step, tarball, kataDir string) {
	t.Helper()
	f.killJob(t, helperJob{Dir: f.dir, Op: "install", Step: step, From: tarball, KataDir: kataDir, Force: true})
}

func (f *fixture) killJob(t *testing.T, job helperJob) {
	t.Helper()
	op, step := job.Op, job.Step
	spec, _ := json.Marshal(job)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s was not killed after %q: %v\n%s", op, step, err, out)
	}
}
