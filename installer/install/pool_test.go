package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// configFactory reads [factory] of the configuration in use.
func (f *fixture) configFactory(t *testing.T) config.Factory {
	t.Helper()
	data, err := os.ReadFile(f.layout().Config())
	must(t, err)
	c, err := config.Decode(data)
	must(t, err)
	return c.Factory
}

// The pool follows --pool, needs templating, is kept by a plain install and an upgrade, is
// turned off by --pool 0 (and with templating by --template=false), and a rollback returns to the
// previous version as it was.
func TestPoolSetting(t *testing.T) {
	on, off := true, false
	n := func(i int) *int { return &i }
	install := func(tmpl *bool, pool *int) func(*testing.T, *fixture) {
		return func(t *testing.T, f *fixture) {
			if _, err := f.install(func(o *InstallOptions) { o.Template, o.Pool = tmpl, pool }); err != nil {
				t.Fatal(err)
			}
		}
	}
	upgrade := func(t *testing.T, f *fixture) {
		f.newAgent(t, "agent "+t.Name()+time.Now().String())
		if _, err := f.upgrade(nil); err != nil {
			t.Fatal(err)
		}
	}
	rollback := func(t *testing.T, f *fixture) {
		if _, err := f.rollback(nil); err != nil {
			t.Fatal(err)
		}
	}
	type steps = []func(*testing.T, *fixture)
	for _, tc := range []struct {
		name     string
		steps    steps
		template bool
		pool     int
		versions int // in the manifest after the steps
	}{
		{"a new install: none", steps{install(nil, nil)}, false, 0, 1},
		{"--template --pool 2", steps{install(&on, n(2))}, true, 2, 1},
		{"--pool on an install with templating", steps{install(&on, nil), install(nil, n(3))}, true, 3, 2},
		{"a plain install keeps it", steps{install(&on, n(2)), install(nil, nil)}, true, 2, 1},
		{"an upgrade keeps it", steps{install(&on, n(2)), upgrade}, true, 2, 2},
		{"--pool 0 turns it off", steps{install(&on, n(2)), install(nil, n(0))}, true, 0, 2},
		{"--template=false turns both off", steps{install(&on, n(2)), install(&off, nil)}, false, 0, 2},
		{"--template keeps the pool", steps{install(&on, n(2)), install(&on, nil)}, true, 2, 1},
		{"rollback returns to the version before --pool", steps{install(&on, nil), install(nil, n(2)), rollback}, true, 0, 2},
		{"rollback after an upgrade keeps it", steps{install(&on, n(1)), upgrade, rollback}, true, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			for _, step := range tc.steps {
				step(t, f)
			}
			if got := f.configFactory(t); got.Template != tc.template || got.Pool != tc.pool {
				t.Errorf("[factory] %+v, want template %v, pool %d", got, tc.template, tc.pool)
			}
			m := f.manifest(t)
			cur := m.FindVersion(m.Current)
			var rec int
			if cur.Factory != nil {
				rec = cur.Factory.Pool
			}
			if rec != tc.pool {
				t.Errorf("the manifest records pool %d for the current version, want %d", rec, tc.pool)
			}
			if len(m.Versions) != tc.versions {
				t.Errorf("%d versions, want %d", len(m.Versions), tc.versions)
			}
			if s := f.status(t); s.Factory == nil || s.Factory.Pool != tc.pool || !s.Healthy {
				t.Errorf("status: factory %+v, problems %v", s.Factory, s.Problems)
			}
		})
	}
}

// --pool N needs templating, now or in the version in use, and a size the runtime accepts; the
// error names the fix and nothing is changed.
func TestPoolRefused(t *testing.T) {
	on, off := true, false
	n := func(i int) *int { return &i }
	for _, tc := range []struct {
		name     string
		existing bool // an install without templating is there
		template *bool
		pool     *int
		want     string
	}{
		{"without templating", false, nil, n(2), "add --template"},
		{"without templating in the version in use", true, nil, n(2), "add --template"},
		{"with --template=false", false, &off, n(2), "drop --template=false, or use --pool 0"},
		{"too many", false, &on, n(config.MaxPool + 1), "0 to 16"},
		{"negative", false, &on, n(-1), "0 to 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			if tc.existing {
				if _, err := f.install(nil); err != nil {
					t.Fatal(err)
				}
			}
			before := f.tree()
			_, err := f.install(func(o *InstallOptions) { o.Template, o.Pool = tc.template, tc.pool })
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--pool") {
				t.Fatalf("err = %v, want one naming --pool and %q", err, tc.want)
			}
			if !slices.Equal(f.tree(), before) {
				t.Errorf("the refused install changed the prefix: %v -> %v", before, f.tree())
			}
		})
	}
	o := InstallOptions{From: "/tmp/kata-static-3.18.0-amd64.tar.zst", Pool: n(1)}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--pool") {
		t.Errorf("--pool with --from: err = %v", err)
	}
}

// writeSlot makes a slot of the pool as the runtime leaves it: a directory with its share, and a
// ready or taken file (none while it starts).
func writeSlot(t *testing.T, cache, key, slot, state string) string {
	t.Helper()
	dir := filepath.Join(runtimecache.PoolDir(cache), key, slot)
	must(t, os.MkdirAll(filepath.Join(dir, runtimecache.SlotShare, runtimecache.SlotShareSubdir), 0o700))
	switch state {
	case runtimecache.SlotStateReady:
		must(t, os.WriteFile(filepath.Join(dir, runtimecache.SlotReady), nil, 0o600))
	case runtimecache.SlotStateTaken:
		must(t, os.WriteFile(filepath.Join(dir, runtimecache.SlotTaken), []byte("/run/kata-deploy/abc\n"), 0o600))
	}
	return dir
}

func TestStatusShowsPool(t *testing.T) {
	on, two := true, 2
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(func(o *InstallOptions) { o.Template, o.Pool = &on, &two }); err != nil {
		t.Fatal(err)
	}
	cache := runtimecache.Dir(f.stateDir())
	hasNote := func(s *Status) bool {
		return slices.ContainsFunc(s.Notes, func(n string) bool {
			return strings.Contains(n, "the pool of clones is empty") && strings.Contains(n, filepath.Join(runtimecache.PoolDir(cache), "fill.log"))
		})
	}

	s := f.status(t)
	if s.Factory == nil || s.Factory.Pool != 2 || s.Factory.PoolDir != runtimecache.PoolDir(cache) || len(s.Factory.PoolFill) != 0 {
		t.Fatalf("factory status %+v", s.Factory)
	}
	if !s.Healthy || !hasNote(s) {
		t.Errorf("no pool yet: healthy %v (problems %v), notes %v", s.Healthy, s.Problems, s.Notes)
	}

	writeSlot(t, cache, "0123456789abcdef", "1", runtimecache.SlotStateTaken)
	writeSlot(t, cache, "0123456789abcdef", "2", runtimecache.SlotStateStarting)
	if s := f.status(t); !hasNote(s) || s.Factory.PoolWaiting() != 0 {
		t.Errorf("nothing waits: notes %v, fill %+v", s.Notes, s.Factory.PoolFill)
	}
	writeSlot(t, cache, "0123456789abcdef", "3", runtimecache.SlotStateReady)
	writeSlot(t, cache, "0123456789abcdef", "4", runtimecache.SlotStateReady)
	writeSlot(t, cache, "fedcba9876543210", "1", runtimecache.SlotStateReady)
	s = f.status(t)
	want := []PoolFill{{Key: "0123456789abcdef", Waiting: 2, Starting: 1, Taken: 1}, {Key: "fedcba9876543210", Waiting: 1}}
	if !slices.Equal(s.Factory.PoolFill, want) || s.Factory.PoolWaiting() != 3 {
		t.Errorf("pool fill %+v, want %+v", s.Factory.PoolFill, want)
	}
	if hasNote(s) || !s.Healthy {
		t.Errorf("clones wait: healthy %v (problems %v), notes %v", s.Healthy, s.Problems, s.Notes)
	}
}

// startFiller starts a process of an executable under the prefix that looks like the pool's
// filler (or a shim, without the environment), then removes the executable (its exe link shows
// the path, "(deleted)").
func startFiller(t *testing.T, prefix string, filler bool) *exec.Cmd {
	t.Helper()
	sleep := testreq.Command(t, "sleep", "coreutils")
	dir := filepath.Join(prefix, "zz-filler")
	bin := filepath.Join(dir, "containerd-shim-kata-v2")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(bin, mustRead(sleep), 0o755))
	cmd := exec.Command(bin, "60")
	if filler {
		cmd.Env = []string{runtimecache.FillPoolEnv + "=1", "PATH=/usr/bin:/bin"}
	}
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	must(t, os.RemoveAll(dir))
	return cmd
}

// The pool's filler is the shim binary, but no container: runningFrom leaves it out and
// poolFillers finds it.
func TestPoolFillerIsNoContainer(t *testing.T) {
	prefix := t.TempDir()
	filler := startFiller(t, prefix, true)
	if got := runningFrom("/proc", []string{prefix}); len(got) != 0 {
		t.Errorf("runningFrom = %+v: the filler counts as a container", got)
	}
	if got := poolFillers("/proc", []string{prefix}); !slices.Equal(got, []int{filler.Process.Pid}) {
		t.Errorf("poolFillers = %v, want [%d]", got, filler.Process.Pid)
	}
	shim := startFiller(t, t.TempDir(), false)
	if got := poolFillers("/proc", []string{filepath.Dir(filepath.Dir(shim.Path))}); len(got) != 0 {
		t.Errorf("poolFillers = %v: a shim counts as a filler", got)
	}
}

// Uninstall stops and removes the pool (its clones, their mounts) before the cache; the dry run
// lists it; a filler does not count as a running container, and one still running afterwards is
// reported.
func TestUninstallRemovesPool(t *testing.T) {
	on, one := true, 1
	for _, filler := range []bool{false, true} {
		t.Run(map[bool]string{false: "no filler", true: "a filler runs"}[filler], func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			if _, err := f.install(func(o *InstallOptions) { o.Template, o.Pool = &on, &one }); err != nil {
				t.Fatal(err)
			}
			cache := runtimecache.Dir(f.stateDir())
			must(t, os.MkdirAll(f.stateDir(), 0o700))
			writeTemplate(t, cache, "0123456789abcdef", time.Now(), 4096, "")
			ready := writeSlot(t, cache, "0123456789abcdef", "1", runtimecache.SlotStateReady)
			writeSlot(t, cache, "0123456789abcdef", "2", runtimecache.SlotStateStarting)
			must(t, os.WriteFile(filepath.Join(runtimecache.PoolDir(cache), runtimecache.PoolFillLog), []byte("filled\n"), 0o600))
			must(t, os.WriteFile(filepath.Join(runtimecache.PoolDir(cache), runtimecache.PoolFillLock), nil, 0o600))
			share := filepath.Join(ready, runtimecache.SlotShare)
			if os.Geteuid() == 0 {
				// What the runtime mounts there: a tmpfs made a shared mount.
				must(t, unix.Mount("tmpfs", share, "tmpfs", 0, "size=1m"))
				t.Cleanup(func() { unix.Unmount(share, unix.MNT_DETACH) })
				must(t, unix.Mount("", share, "", unix.MS_SHARED, ""))
			}
			if filler {
				startFiller(t, f.prefix(), true)
			}

			dry, err := f.uninstall(func(o *UninstallOptions) { o.DryRun = true })
			if err != nil || !slices.Contains(dry.Removed, runtimecache.PoolDir(cache)+"/") {
				t.Fatalf("dry run: %v, removes %v", err, dry.Removed)
			}
			if _, err := os.Stat(ready); err != nil {
				t.Fatal("the dry run removed the pool")
			}

			res, err := f.uninstall(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(res.Removed, runtimecache.PoolDir(cache)+"/") {
				t.Errorf("removed %v, not the pool", res.Removed)
			}
			for _, d := range []string{runtimecache.PoolDir(cache), cache, f.stateDir()} {
				if _, err := os.Lstat(d); err == nil {
					t.Errorf("%s is left; warnings %v", d, res.Warnings)
				}
			}
			if slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "VM containers still run") }) {
				t.Errorf("the pool was taken for containers: %v", res.Warnings)
			}
			stillRuns := slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "a filler of the pool of clones still runs") })
			if stillRuns != filler {
				t.Errorf("warnings %v (a filler runs: %v)", res.Warnings, filler)
			}
			if n, err := countMounts(share); err != nil || n != 0 {
				t.Errorf("%d mounts left at %s (%v)", n, share, err)
			}
			if len(f.tree()) != 0 {
				t.Errorf("left under the prefix: %v", f.tree())
			}
		})
	}
}

// countMounts counts the mounts at p in /proc/self/mountinfo.
func countMounts(p string) (int, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && fields[4] == p {
			n++
		}
	}
	return n, nil
}
