package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/cmd/kata-deploy/commands"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/packaging/distro"
)

// pkgRuntime is the runtime name the package test registers (kata_test.go's "kata" and
// install_test.go's runtime live in the same engine).
const pkgRuntime = "kata-pkg-test"

// packagedKataDeploy is where the package puts kata-deploy on PATH.
const packagedKataDeploy = "/usr/bin/kata-deploy"

// The .deb on the host, as an admin uses it: dpkg -i changes nothing in Docker and says what to
// run; the installed kata-deploy (in /usr, its shim and agent in /usr/lib/kata-deploy) runs
// version, check, install under the default prefix, a kata container and uninstall; installing a
// newer package while a kata container runs upgrades the install (the container keeps running,
// new ones use the new version); dpkg --purge with the runtime installed uninstalls it first,
// then nothing of the package, the install or its caches is left.
func TestDebPackageLifecycle(t *testing.T) {
	e := requireInstall(t)
	testreq.Commands(t, "dpkg", "dpkg-deb")
	requireCleanHost(t)
	debs := buildTestDebs(t)
	t.Cleanup(purgeLeftovers(t))
	before := e.daemonJSONBytes(t)
	markCache := prepareKernelCache(t)

	out := dpkg(t, "-i", debs[0])
	if !strings.Contains(out, "Next step: sudo kata-deploy install") {
		t.Errorf("dpkg -i does not print the next step:\n%s", out)
	}
	if !bytes.Equal(e.daemonJSONBytes(t), before) {
		t.Fatal("installing the package changed daemon.json")
	}
	if v := run(t, packagedKataDeploy, "version"); v.code != 0 || !strings.Contains(v.stdout, "1.0.0") {
		t.Errorf("kata-deploy version: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	if c := run(t, packagedKataDeploy, "check"); c.code != 0 {
		t.Errorf("kata-deploy check: exit %d\n%s%s", c.code, c.stdout, c.stderr)
	}

	// install takes the shim and the agent from /usr/lib/kata-deploy (no --artifacts-dir).
	r := pkgInstall(t, e)
	if got := docker(t, "", "run", "--rm", "--runtime="+pkgRuntime, "busybox", "uname", "-r"); strings.TrimSpace(got.stdout) != r.GuestKernel {
		t.Errorf("docker run --runtime=%s busybox uname -r = %q (exit %d, %s), want %q", pkgRuntime, got.stdout, got.code, got.stderr, r.GuestKernel)
	}

	// A newer package while a container runs: postinst upgrades the install.
	long := docker(t, "", "run", "-d", "--runtime="+pkgRuntime, "busybox", "sleep", "600")
	if long.code != 0 {
		t.Fatalf("starting a long-running kata container: %s", long.stderr)
	}
	id := strings.TrimSpace(long.stdout)
	defer docker(t, "", "rm", "-f", id)
	out = dpkg(t, "-i", debs[1])
	if !strings.Contains(out, "kata-deploy upgrade") {
		t.Errorf("dpkg -i of the newer package did not upgrade the install:\n%s", out)
	}
	s := pkgStatus(t)
	if s.CurrentVersion == nil || s.PreviousVersion == nil || s.CurrentVersion.ID == r.Version || s.PreviousVersion.ID != r.Version {
		t.Errorf("after the package upgrade: current %+v, previous %+v (installed %s)\n%s", s.CurrentVersion, s.PreviousVersion, r.Version, out)
	}
	if got := docker(t, "", "exec", id, "echo", "alive"); strings.TrimSpace(got.stdout) != "alive" {
		t.Errorf("the container started before the upgrade: exec exit %d %q %s", got.code, got.stdout, got.stderr)
	}
	if got := docker(t, "", "run", "--rm", "--runtime="+pkgRuntime, "busybox", "uname", "-r"); strings.TrimSpace(got.stdout) != r.GuestKernel {
		t.Errorf("a container after the upgrade: exit %d %q %s", got.code, got.stdout, got.stderr)
	}
	docker(t, "", "rm", "-f", id)

	// kata-deploy uninstall from the package.
	if un := run(t, packagedKataDeploy, "uninstall"); un.code != 0 {
		t.Fatalf("kata-deploy uninstall: exit %d\n%s%s", un.code, un.stdout, un.stderr)
	}
	e.checkRestored(t, before)
	if _, err := os.Stat(layout.DefaultPrefix); !os.IsNotExist(err) {
		t.Errorf("uninstall left %s: %v", layout.DefaultPrefix, err)
	}

	// dpkg --purge with the runtime installed: prerm uninstalls it first.
	pkgInstall(t, e, "--skip-smoke")
	out = dpkg(t, "--purge", distro.Name)
	if !strings.Contains(out, "kata-deploy uninstall") {
		t.Errorf("dpkg --purge did not uninstall the runtime:\n%s", out)
	}
	e.checkRestored(t, before)
	if strings.Contains(dockerRuntimes(t), `"`+pkgRuntime+`"`) {
		t.Errorf("docker info still lists %s after dpkg --purge", pkgRuntime)
	}
	if st := run(t, "dpkg", "-s", distro.Name); st.code == 0 {
		t.Errorf("dpkg -s %s after purge: still known\n%s", distro.Name, st.stdout)
	}
	left := []string{layout.DefaultPrefix, distro.LibDir, packagedKataDeploy, "/usr/bin/kata-guest-image", "/usr/share/kata-deploy",
		distro.DocDir, "/usr/share/man/man1/kata-deploy.1.gz", "/usr/share/bash-completion/completions/kata-deploy", install.DefaultKernelCache}
	if markCache {
		left = append(left, filepath.Dir(install.DefaultKernelCache)) // it held nothing else
	}
	for _, p := range left {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left after dpkg --purge (%v)", p, err)
		}
	}
}

// requireCleanHost refuses to run where the package or an install under the default prefix
// already is: the test installs and purges its own and must not take someone's away.
func requireCleanHost(t *testing.T) {
	t.Helper()
	if st := run(t, "dpkg", "-s", distro.Name); st.code == 0 {
		t.Fatalf("the %s package is installed on this host: remove it first (the test installs and purges its own)", distro.Name)
	}
	for _, p := range []string{layout.DefaultPrefix, distro.LibDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists on this host: the test installs under the default prefix and purges the package, so it does not run here", p)
		}
	}
}

// prepareKernelCache puts a file in the kernel package cache when there is none, to see purge
// remove it; it reports whether the cache's parent held nothing else (purge then removes it too).
func prepareKernelCache(t *testing.T) bool {
	t.Helper()
	parent := filepath.Dir(install.DefaultKernelCache)
	entries, _ := os.ReadDir(parent)
	if err := os.MkdirAll(install.DefaultKernelCache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(install.DefaultKernelCache, "purge-marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(install.DefaultKernelCache) {
			return false
		}
	}
	return true
}

// buildTestDebs builds the binaries and two packages, 1.0.0 and 1.0.1, whose shims differ (their
// version is linked in), so installing the second is an upgrade to a new runtime version.
func buildTestDebs(t *testing.T) [2]string {
	t.Helper()
	var debs [2]string
	for i, version := range []string{"1.0.0", "1.0.1"} {
		bin := filepath.Join(t.TempDir(), "bin")
		ldflags := "-X github.com/kata-deploy/kata-deploy/internal/version.Version=" + version
		for _, b := range distro.Binaries {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(bin, b), "github.com/kata-deploy/kata-deploy/cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("building %s: %v\n%s", b, err, out)
			}
		}
		paths, err := distro.Build(distro.Options{BinDir: bin, Config: "../../configs/configuration-qemu.toml", License: "../../LICENSE",
			Version: version, MTime: time.Unix(1_700_000_000, 0), OutDir: filepath.Join(t.TempDir(), "dist"), Root: commands.Root})
		if err != nil {
			t.Fatal(err)
		}
		debs[i] = paths[0]
	}
	return debs
}

// purgeLeftovers undoes what a failed run left: the install, then the package.
func purgeLeftovers(t *testing.T) func() {
	return func() {
		if _, err := os.Stat(filepath.Join(layout.DefaultPrefix, "manifest.json")); err == nil {
			t.Logf("cleanup: %s uninstall --force", packagedKataDeploy)
			_ = exec.Command(packagedKataDeploy, "uninstall", "--force").Run()
		}
		if exec.Command("dpkg", "-s", distro.Name).Run() == nil {
			t.Logf("cleanup: dpkg --purge %s", distro.Name)
			if out, err := exec.Command("dpkg", "--purge", distro.Name).CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge: %v\n%s", err, out)
			}
		}
	}
}

func pkgInstall(t *testing.T, e *installEnv, extra ...string) install.Result {
	t.Helper()
	args := append([]string{"install", "-o", "json", "--runtime-name", pkgRuntime, "--kernel", e.kernel}, extra...)
	res := run(t, packagedKataDeploy, args...)
	var r install.Result
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil || res.code != 0 {
		t.Fatalf("kata-deploy install: exit %d, %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if !r.Changed || r.Version == "" || !strings.Contains(dockerRuntimes(t), `"`+pkgRuntime+`"`) {
		t.Errorf("install result %+v; docker info runtimes %s", r, dockerRuntimes(t))
	}
	return r
}

func pkgStatus(t *testing.T) install.Status {
	t.Helper()
	st := run(t, packagedKataDeploy, "status", "-o", "json")
	var s install.Status
	if err := json.Unmarshal([]byte(st.stdout), &s); err != nil {
		t.Fatalf("kata-deploy status: exit %d, %v\n%s%s", st.code, err, st.stdout, st.stderr)
	}
	return s
}

// dpkg runs dpkg with the test's environment (DOCKER_HOST reaches the maintainer scripts) and
// returns its output; a failure fails the test.
func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	res := run(t, "dpkg", args...)
	out := res.stdout + res.stderr
	if res.code != 0 {
		t.Fatalf("dpkg %v: exit %d\n%s", args, res.code, out)
	}
	t.Logf("dpkg %s:\n%s", strings.Join(args, " "), out)
	return out
}
