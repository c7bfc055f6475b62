package install

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// configTemplate reads [factory] template of the configuration in use.
func (f *fixture) configTemplate(t *testing.T) bool {
	t.Helper()
	data, err := os.ReadFile(f.layout().Config())
	must(t, err)
	c, err := config.Decode(data)
	must(t, err)
	return c.Factory.Template
}

// The setting follows --template, is kept by a plain install and an upgrade, is turned off by
// --template=false, and a rollback returns to the previous version as it was.
func TestTemplateSetting(t *testing.T) {
	on, off := true, false
	install := func(tmpl *bool) func(*testing.T, *fixture) {
		return func(t *testing.T, f *fixture) {
			if _, err := f.install(func(o *InstallOptions) { o.Template = tmpl }); err != nil {
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
	for _, tc := range []struct {
		name     string
		steps    []func(*testing.T, *fixture)
		want     bool
		versions int // in the manifest after the steps
	}{
		{"a new install: off", []func(*testing.T, *fixture){install(nil)}, false, 1},
		{"--template", []func(*testing.T, *fixture){install(&on)}, true, 1},
		{"--template on an install without it: a new version", []func(*testing.T, *fixture){install(nil), install(&on)}, true, 2},
		{"a plain install keeps it", []func(*testing.T, *fixture){install(&on), install(nil)}, true, 1},
		{"an upgrade keeps it", []func(*testing.T, *fixture){install(&on), upgrade}, true, 2},
		{"--template=false turns it off", []func(*testing.T, *fixture){install(&on), install(&off)}, false, 2},
		{"rollback returns to the version before --template", []func(*testing.T, *fixture){install(nil), install(&on), rollback}, false, 2},
		{"rollback after an upgrade keeps it", []func(*testing.T, *fixture){install(&on), upgrade, rollback}, true, 2},
		{"an upgrade after a rollback keeps the version in use's", []func(*testing.T, *fixture){install(nil), install(&on), rollback, upgrade}, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			for _, step := range tc.steps {
				step(t, f)
			}
			if got := f.configTemplate(t); got != tc.want {
				t.Errorf("[factory] template = %v, want %v", got, tc.want)
			}
			m := f.manifest(t)
			cur := m.FindVersion(m.Current)
			if rec := cur.Factory != nil && cur.Factory.Template; rec != tc.want {
				t.Errorf("the manifest records template %v for the current version, want %v", rec, tc.want)
			}
			if len(m.Versions) != tc.versions {
				t.Errorf("%d versions, want %d", len(m.Versions), tc.versions)
			}
			if s := f.status(t); s.Factory == nil || s.Factory.Template != tc.want || !s.Healthy {
				t.Errorf("status: factory %+v, problems %v", s.Factory, s.Problems)
			}
		})
	}
}

// A configuration the user changed is not overwritten by --template: the new version gets a fresh
// configuration, the changed one stays with its version, and the user is told.
func TestTemplateLeavesAnEditedConfiguration(t *testing.T) {
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(nil); err != nil {
		t.Fatal(err)
	}
	old := f.layout().Config()
	edited := append(f.file(old), []byte("\n# mine\n")...)
	must(t, os.WriteFile(old, edited, 0o644))
	on := true
	res, err := f.install(func(o *InstallOptions) { o.Template = &on })
	if err != nil {
		t.Fatal(err)
	}
	if string(f.file(old)) != string(edited) {
		t.Error("the edited configuration was changed")
	}
	if !res.Template || !f.configTemplate(t) || f.layout().Config() == old {
		t.Errorf("template %v, config %s (old %s)", res.Template, f.layout().Config(), old)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "carry your changes over") }) {
		t.Errorf("no warning about the edited configuration: %v", res.Warnings)
	}
}

func TestTemplateRefusedWithUpstreamRelease(t *testing.T) {
	on := true
	o := InstallOptions{From: "/tmp/kata-static-3.18.0-amd64.tar.zst", Template: &on}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--template") {
		t.Errorf("err = %v", err)
	}
}

// writeTemplate makes a template directory as the runtime leaves it.
func writeTemplate(t *testing.T, cache, key string, created time.Time, memory int, failed string) {
	t.Helper()
	dir := filepath.Join(runtimecache.TemplatesDir(cache), key)
	must(t, os.MkdirAll(dir, 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "memory"), make([]byte, memory), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "state"), []byte("state"), 0o600))
	ready, _ := json.Marshal(map[string]any{"key": key, "memoryMiB": 2048, "vcpus": 1, "created": created})
	must(t, os.WriteFile(filepath.Join(dir, "ready"), ready, 0o600))
	if failed != "" {
		must(t, os.WriteFile(filepath.Join(dir, "failed"), []byte(failed+"\n"), 0o600))
	}
}

func TestStatusShowsTemplates(t *testing.T) {
	on := true
	f := newFixture(t, []byte("{}"))
	if _, err := f.install(func(o *InstallOptions) { o.Template = &on }); err != nil {
		t.Fatal(err)
	}
	cache := runtimecache.Dir(f.stateDir())
	created := time.Now().Add(-90 * time.Second)
	writeTemplate(t, cache, "0123456789abcdef", created, 3<<20, "")
	writeTemplate(t, cache, "fedcba9876543210", created, 0, "building the VM template: boom")
	s := f.status(t)
	if s.Factory == nil || !s.Factory.Template || s.Factory.TemplatesDir != runtimecache.TemplatesDir(cache) || len(s.Factory.Templates) != 2 {
		t.Fatalf("factory status %+v", s.Factory)
	}
	good, bad := s.Factory.Templates[0], s.Factory.Templates[1]
	if !good.Ready || good.MemoryBytes < 3<<20 || good.MemoryMiB != 2048 || good.AgeSeconds < 89 || good.AgeSeconds > 120 || good.LastUsed == nil || good.Failed != "" {
		t.Errorf("template %+v", good)
	}
	if bad.Failed != "building the VM template: boom" || bad.MemoryBytes != 0 {
		t.Errorf("failed template %+v", bad)
	}
	if !s.Healthy || !slices.ContainsFunc(s.Notes, func(n string) bool { return strings.Contains(n, "boom") }) {
		t.Errorf("healthy %v (problems %v), notes %v", s.Healthy, s.Problems, s.Notes)
	}
}

// Uninstall empties the runtime's cache and removes the runtime's directories it found absent,
// but only once no container runs; what was there before the install stays.
func TestUninstallRemovesRuntimeCache(t *testing.T) {
	for _, tc := range []struct {
		name       string
		preexisted bool // the cache directory was there before install
		containers bool // a container still runs (--ignore-in-use)
		wantCache  bool // the cache directory is left
		wantTmpl   bool // the templates are left
	}{
		{"made by the runtime: all gone", false, false, false, false},
		{"there before: emptied and kept", true, false, true, false},
		{"containers run: left for them", false, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []byte("{}"))
			cache := runtimecache.Dir(f.stateDir())
			if tc.preexisted {
				must(t, os.MkdirAll(cache, 0o700))
			}
			if _, err := f.install(nil); err != nil {
				t.Fatal(err)
			}
			// What the runtime makes once containers ran.
			must(t, os.MkdirAll(f.stateDir(), 0o700))
			writeTemplate(t, cache, "0123456789abcdef", time.Now(), 4096, "")
			must(t, os.WriteFile(filepath.Join(runtimecache.TemplatesDir(cache), ".lock"), nil, 0o600))
			must(t, os.WriteFile(filepath.Join(cache, "qemu-sandbox-0011223344556677.json"), []byte("{}"), 0o600))
			if tc.containers {
				f.daemon.Containers = []dockerapi.Container{{ID: "0123456789ab", Name: "web", Image: "busybox"}}
			}
			dry, err := f.uninstall(func(o *UninstallOptions) { o.DryRun, o.IgnoreInUse = true, tc.containers })
			if err != nil || !slices.Contains(dry.Removed, runtimecache.TemplatesDir(cache)+"/") {
				t.Fatalf("dry run: %v, removes %v", err, dry.Removed)
			}
			if _, err := os.Stat(runtimecache.TemplatesDir(cache)); err != nil {
				t.Fatal("the dry run removed the templates")
			}
			res, err := f.uninstall(func(o *UninstallOptions) { o.IgnoreInUse = tc.containers })
			if err != nil {
				t.Fatal(err)
			}
			_, errT := os.Stat(runtimecache.TemplatesDir(cache))
			_, errC := os.Stat(cache)
			_, errS := os.Stat(f.stateDir())
			if (errT == nil) != tc.wantTmpl || (errC == nil) != tc.wantCache || (errS == nil) != tc.containers {
				t.Errorf("left: templates %v (want %v), cache %v (want %v), state dir %v; removed %v; warnings %v",
					errT == nil, tc.wantTmpl, errC == nil, tc.wantCache, errS == nil, res.Removed, res.Warnings)
			}
			if tc.preexisted && !tc.containers && !isEmptyDir(cache) {
				t.Errorf("the cache there before install is not emptied of the runtime's entries")
			}
			if len(f.tree()) != 0 {
				t.Errorf("left under the prefix: %v", f.tree())
			}
		})
	}
}
