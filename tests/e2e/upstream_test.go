package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/upstream"
	"github.com/kata-deploy/kata-deploy/installer/upstream/upstreamtest"
)

// upstreamRuntime is the runtime name of the upstream-release test.
const upstreamRuntime = "kata-upstream-test"

// install --from a (synthetic: there is no network) upstream release against the real engine: a
// malicious release is refused and changes nothing; a good one is extracted where asked,
// registered with its own shim and configuration-qemu.toml, listed by Docker, and uninstalled
// back to a byte-identical daemon.json. The release's shim is a stand-in, so no smoke container.
func TestInstallFromUpstreamRelease(t *testing.T) {
	e := requireInstall(t)
	dir := t.TempDir()
	kataDir, prefix := filepath.Join(dir, "opt", "kata"), filepath.Join(dir, "kata-deploy")
	if err := os.MkdirAll(filepath.Dir(kataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	before := e.daemonJSONBytes(t)
	args := func(tarball string, extra ...string) []string {
		return append([]string{"install", "--from", tarball, "--kata-dir", kataDir, "--prefix", prefix, "--runtime-name", upstreamRuntime, "--skip-smoke"}, extra...)
	}

	evil, err := upstreamtest.Write(dir, "kata-static-3.18.0-amd64.tar.xz", "xz",
		append(upstreamtest.Release("3.18.0"), upstreamtest.Symlink("./opt/kata/bin/etc", "../../../etc"), upstreamtest.File("./opt/kata/bin/etc/evil", "x")))
	if err != nil {
		t.Fatal(err)
	}
	bad := kataDeploy(t, args(evil)...)
	if bad.code != 1 || !strings.Contains(bad.stderr, "outside /opt/kata") || !strings.Contains(bad.stderr, "nothing was installed") {
		t.Errorf("a malicious release: exit %d\n%s", bad.code, bad.stderr)
	}
	for _, p := range []string{kataDir, prefix, "/etc/evil"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused release: %v", p, err)
		}
	}
	if string(e.daemonJSONBytes(t)) != string(before) {
		t.Error("a refused release changed daemon.json")
	}

	good, err := upstreamtest.Write(dir, "kata-static-3.18.0-amd64.tar.zst", "zst", upstreamtest.Release("3.18.0"))
	if err != nil {
		t.Fatal(err)
	}
	inst := kataDeploy(t, args(good, "-o", "json")...)
	r := decode[install.Result](t, inst, "install --from")
	if inst.code != 0 || !r.Reloaded || r.Upstream != "3.18.0" || r.UpstreamDir != kataDir {
		t.Fatalf("install --from: exit %d %+v\n%s", inst.code, r, inst.stderr)
	}
	defer kataDeploy(t, "uninstall", "--force", "--prefix", prefix)
	data := string(e.daemonJSONBytes(t))
	for _, want := range []string{filepath.Join(kataDir, upstream.ShimPath), filepath.Join(kataDir, upstream.ConfigPath)} {
		if !strings.Contains(data, `"`+want+`"`) {
			t.Errorf("daemon.json lacks %s:\n%s", want, data)
		}
	}
	if !strings.Contains(dockerRuntimes(t), `"`+upstreamRuntime+`"`) {
		t.Errorf("docker info does not list %s", upstreamRuntime)
	}
	st := decode[install.Status](t, kataDeploy(t, "status", "-o", "json", "--prefix", prefix), "status")
	if !st.Healthy || st.Layout != "upstream" || st.Upstream == nil || st.Upstream.Version != "3.18.0" || !st.Docker.SeesRuntime {
		t.Errorf("status: %+v %v", st.Upstream, st.Problems)
	}

	un := kataDeploy(t, "uninstall", "--prefix", prefix)
	if un.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s", un.code, un.stderr)
	}
	if got := e.daemonJSONBytes(t); string(got) != string(before) {
		t.Errorf("daemon.json after uninstall:\n%s\nwant:\n%s", got, before)
	}
	for _, p := range []string{kataDir, prefix} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is left: %v", p, err)
		}
	}
	if strings.Contains(dockerRuntimes(t), `"`+upstreamRuntime+`"`) {
		t.Errorf("docker info still lists %s", upstreamRuntime)
	}
}
