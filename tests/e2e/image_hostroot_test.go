package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeHost makes a temporary host root that is the machine for what install reads (the
// system's programs and libraries, /proc, /dev, /sys, /run with the engine's socket, the
// engine's daemon.json and dockerd binary, bound in) but has its own /opt, /var/cache and /tmp:
// what install writes there must land inside it, and what it writes into daemon.json must be the
// host root's own view of its paths.
func fakeHost(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "kata-deploy-hostroot-")
	if err != nil {
		t.Fatal(err)
	}
	var mounted []string
	t.Cleanup(func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounted[i], unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting %s: %v", mounted[i], err)
			}
		}
		// Never remove through a mount still there: it would reach the machine's files.
		if m := mountsUnder(t, root); len(m) > 0 {
			t.Errorf("mounts left under %s, not removing it: %v", root, m)
			return
		}
		os.RemoveAll(root)
	})
	bind := func(src string, readOnly bool) {
		dst := filepath.Join(root, src)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatalf("binding %s: %v", src, err)
		}
		mounted = append(mounted, dst)
		// Private: nothing mounted or unmounted here reaches the machine's mounts.
		if err := unix.Mount("", dst, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			t.Fatalf("making %s private: %v", dst, err)
		}
		if readOnly {
			if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				t.Fatalf("making %s read-only: %v", dst, err)
			}
		}
	}
	for _, d := range []string{"usr", "etc"} {
		bind("/"+d, true)
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} { // merged /usr: links, else binds
		if target, err := os.Readlink("/" + d); err == nil {
			if err := os.Symlink(target, filepath.Join(root, d)); err != nil {
				t.Fatal(err)
			}
		} else if _, err := os.Stat("/" + d); err == nil {
			bind("/"+d, true)
		}
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", filepath.Dir(os.Getenv("KATA_TEST_DAEMON_JSON"))} {
		bind(d, false)
	}
	bind(os.Getenv("KATA_TEST_ENGINE_BIN"), true)
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	return root
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// TestImageInstallTempHostRoot installs with the image onto a temporary host root: the prefix,
// the kernel cache and the staging directory are the root's; daemon.json gets the root's view of
// the shim's path (no /host, no temporary directory); the machine's own /opt is untouched; the
// image's uninstall puts daemon.json back byte for byte and empties the root's prefix.
func TestImageInstallTempHostRoot(t *testing.T) {
	requireImageEnv(t)
	const (
		name   = "kata-image-root-e2e"
		prefix = "/opt/kata-deploy-root-e2e"
	)
	image := buildImage(t, nil)
	root := fakeHost(t)
	daemonJSON := os.Getenv("KATA_TEST_DAEMON_JSON")
	before, err := os.ReadFile(daemonJSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Lstat(filepath.Join(root, prefix)); err == nil {
			t.Errorf("%s left in the host root: uninstalling", prefix)
			runImage(t, image, root, "uninstall", "--force", "--prefix", prefix)
		}
	})
	// No smoke container: the engine runs its shims from the machine's /, where this root's
	// prefix is not.
	r := runImage(t, image, root, "install", "--prefix", prefix, "--runtime-name", name, "--skip-smoke")
	if r.code != 0 {
		t.Fatalf("install into %s: exit %d\n%s\n%s", root, r.code, r.stdout, r.stderr)
	}
	shim := prefix + "/current/bin/containerd-shim-kata-v2"
	after, _ := os.ReadFile(daemonJSON)
	if got := runtimeType(t, after, name); got != shim {
		t.Errorf("daemon.json registers %q, want the host root's view %q", got, shim)
	}
	if _, err := os.Stat(filepath.Join(root, shim)); err != nil {
		t.Errorf("the shim is not in the host root: %v", err)
	}
	if _, err := os.Lstat(prefix); err == nil {
		t.Errorf("%s was created on the machine, outside the host root", prefix)
	}
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/kata-deploy/kernel/linux-image-*.deb"))
	if len(debs) != 1 {
		t.Errorf("kernel packages in the host root's cache: %v, want the image's", debs)
	}
	u := runImage(t, image, root, "uninstall", "--prefix", prefix)
	if u.code != 0 {
		t.Fatalf("uninstall from %s: exit %d\n%s\n%s", root, u.code, u.stdout, u.stderr)
	}
	if now, _ := os.ReadFile(daemonJSON); string(now) != string(before) {
		t.Errorf("daemon.json after uninstall:\n%s\nwant:\n%s", now, before)
	}
	if _, err := os.Lstat(filepath.Join(root, prefix)); err == nil {
		t.Errorf("%s left in the host root after uninstall", prefix)
	}
	if left := stagingLeft(t, "/"); len(left) > 0 {
		t.Errorf("staging directories left in /run: %v", left)
	}
}
