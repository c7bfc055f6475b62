package distro

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The maintainer scripts of both families, run with the paths moved into a temporary directory
// and a stand-in kata-deploy that records its arguments: install says the next step, a package
// upgrade upgrades an existing install (and never fails the package for it), removal uninstalls
// first (and is refused when that fails), an upgrade of the package does not uninstall, purge
// (rpm: erase) removes the caches and the lock, and nothing else does.
func TestMaintainerScripts(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		args         []string
		installed    bool // <prefix>/manifest.json exists
		fail         bool // kata-deploy exits 1
		wantExit     int
		wantCall     string // kata-deploy's arguments, "" for no call
		wantOut      string
		purged       bool // caches, lock, empty state dir and prefix removed
	}{
		{name: "deb install", script: "deb-postinst", args: []string{"configure", ""}, wantOut: "Next step: sudo kata-deploy install"},
		{name: "deb install beside an install", script: "deb-postinst", args: []string{"configure", ""}, installed: true, wantOut: "'sudo kata-deploy upgrade' moves it"},
		{name: "deb upgrade with an install", script: "deb-postinst", args: []string{"configure", "1.0.0"}, installed: true, wantCall: "upgrade --prefix P", wantOut: "kata-deploy upgrade"},
		{name: "deb upgrade failing", script: "deb-postinst", args: []string{"configure", "1.0.0"}, installed: true, fail: true, wantCall: "upgrade --prefix P", wantOut: "the upgrade failed"},
		{name: "deb upgrade without an install", script: "deb-postinst", args: []string{"configure", "1.0.0"}, wantOut: "Next step"},
		{name: "deb remove with an install", script: "deb-prerm", args: []string{"remove"}, installed: true, wantCall: "uninstall --prefix P"},
		{name: "deb remove, uninstall refused", script: "deb-prerm", args: []string{"remove"}, installed: true, fail: true, wantExit: 1, wantCall: "uninstall --prefix P", wantOut: "the package is not removed"},
		{name: "deb remove without an install", script: "deb-prerm", args: []string{"remove"}},
		{name: "deb prerm of an upgrade", script: "deb-prerm", args: []string{"upgrade", "1.0.1"}, installed: true},
		{name: "deb purge", script: "deb-postrm", args: []string{"purge"}, purged: true},
		{name: "deb remove keeps caches", script: "deb-postrm", args: []string{"remove"}},
		{name: "rpm install", script: "rpm-post", args: []string{"1"}, wantOut: "Next step: sudo kata-deploy install"},
		{name: "rpm upgrade with an install", script: "rpm-post", args: []string{"2"}, installed: true, wantCall: "upgrade --prefix P"},
		{name: "rpm upgrade failing", script: "rpm-post", args: []string{"2"}, installed: true, fail: true, wantCall: "upgrade --prefix P", wantOut: "the upgrade failed"},
		{name: "rpm erase with an install", script: "rpm-preun", args: []string{"0"}, installed: true, wantCall: "uninstall --prefix P"},
		{name: "rpm erase, uninstall refused", script: "rpm-preun", args: []string{"0"}, installed: true, fail: true, wantExit: 1, wantCall: "uninstall --prefix P"},
		{name: "rpm preun of an upgrade", script: "rpm-preun", args: []string{"1"}, installed: true},
		{name: "rpm erase removes caches", script: "rpm-postun", args: []string{"0"}, purged: true},
		{name: "rpm postun of an upgrade", script: "rpm-postun", args: []string{"1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := hostPaths{Prefix: filepath.Join(dir, "opt/kata-deploy"), Bin: filepath.Join(dir, "kata-deploy"),
				KernelCache: filepath.Join(dir, "cache/kernel"), GuestImageCache: filepath.Join(dir, "cache/kernels"),
				CacheRoot: filepath.Join(dir, "cache"), Lock: filepath.Join(dir, "kata-deploy.lock"), State: filepath.Join(dir, "run/kata-deploy")}
			calls := filepath.Join(dir, "calls")
			exit := "0"
			if tc.fail {
				exit = "1"
			}
			writeFile(t, p.Bin, "#!/bin/sh\necho \"$*\" >> "+calls+"\nexit "+exit+"\n", 0o755)
			for _, d := range []string{p.Prefix, p.State} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(p.KernelCache, "linux-image.deb"), "k", 0o644)
			writeFile(t, filepath.Join(p.GuestImageCache, "linux-image.deb"), "k", 0o644)
			writeFile(t, p.Lock, "", 0o600)
			if tc.installed {
				writeFile(t, filepath.Join(p.Prefix, "manifest.json"), "{}", 0o644)
			}
			script, err := render("files/"+tc.script, p)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.script)
			writeFile(t, path, string(script), 0o755)

			out, err := exec.Command("sh", append([]string{path}, tc.args...)...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantExit || !strings.Contains(string(out), tc.wantOut) {
				t.Errorf("exit %d, want %d; output (want %q):\n%s", code, tc.wantExit, tc.wantOut, out)
			}
			got, _ := os.ReadFile(calls)
			want := ""
			if tc.wantCall != "" {
				want = strings.ReplaceAll(tc.wantCall, " P", " "+p.Prefix) + "\n"
			}
			if string(got) != want {
				t.Errorf("kata-deploy called with %q, want %q", got, want)
			}
			for _, f := range []string{p.KernelCache, p.GuestImageCache, p.Lock, p.CacheRoot, p.State, p.Prefix} {
				_, err := os.Stat(f)
				if gone := os.IsNotExist(err); gone != tc.purged {
					t.Errorf("%s: removed %v, want %v", f, gone, tc.purged)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
