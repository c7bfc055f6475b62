package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-deploy/kata-deploy/internal/runtimecache"
	"github.com/kata-deploy/kata-deploy/runtime/config"
	"github.com/kata-deploy/kata-deploy/runtime/hypervisor"
)

// factoryOptions are a container's options with templating on and files that exist.
func factoryOptions(t *testing.T) (Options, hypervisor.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	for _, p := range []*string{&cfg.Hypervisor.Path, &cfg.Hypervisor.Kernel, &cfg.Hypervisor.Initrd, &cfg.Hypervisor.Firmware} {
		f, err := os.CreateTemp(dir, "file")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		*p = f.Name()
	}
	cfg.Runtime.StateDir = filepath.Join(dir, "state")
	cfg.Factory.Template = true
	opts := Options{ID: "c1", Spec: &specs.Spec{}, Config: cfg}
	return opts, vmConfig(opts, filepath.Join(cfg.Runtime.StateDir, "c1"), hypervisor.AccelTCG, "")
}

func TestTemplateKey(t *testing.T) {
	opts, vc := factoryOptions(t)
	key := func(vc hypervisor.Config) string {
		k, err := templateKey(templateConfig(vc, ""))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(vc)
	// What belongs to the container does not change the key.
	other := vc
	other.ID, other.StateDir, other.NetNSPath = "c2", "/elsewhere/vm", "/proc/1/ns/net"
	other.Shares = []hypervisor.Share{{Tag: vc.Shares[0].Tag, HostPath: "/elsewhere/shared", Type: vc.Shares[0].Type}}
	if key(other) != base {
		t.Errorf("the container's own paths changed the template key")
	}
	tests := []struct {
		name   string
		mutate func(vc *hypervisor.Config)
	}{
		{"kernel replaced", func(vc *hypervisor.Config) {
			time.Sleep(10 * time.Millisecond)
			os.WriteFile(vc.Kernel, []byte("new kernel"), 0o644)
		}},
		{"initrd path", func(vc *hypervisor.Config) { vc.Initrd = opts.Config.Hypervisor.Path }},
		{"QEMU upgraded", func(vc *hypervisor.Config) { os.WriteFile(vc.QEMUPath, []byte("qemu 8"), 0o755) }},
		{"kernel parameters", func(vc *hypervisor.Config) { vc.KernelParams = append(vc.KernelParams, "x=1") }},
		{"memory", func(vc *hypervisor.Config) { vc.MemoryMiB++ }},
		{"vCPUs", func(vc *hypervisor.Config) { vc.VCPUs++ }},
		{"accelerator", func(vc *hypervisor.Config) { vc.Accelerator = hypervisor.AccelKVM }},
		{"debug", func(vc *hypervisor.Config) { vc.Debug = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, vc := factoryOptions(t)
			before := key(vc)
			tt.mutate(&vc)
			if key(vc) == before {
				t.Errorf("the template key did not change")
			}
		})
	}
	missing := vc
	missing.Kernel = filepath.Join(t.TempDir(), "none")
	if _, err := templateKey(templateConfig(missing, "")); err == nil {
		t.Errorf("a missing kernel gave a key")
	}
}

func TestFitsTemplate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(o *Options, vc *hypervisor.Config)
		want   string // "" = fits
	}{
		{"default container", func(*Options, *hypervisor.Config) {}, ""},
		{"memory limit", func(_ *Options, vc *hypervisor.Config) { vc.MemoryMiB = 1024 }, "limits"},
		{"more vCPUs", func(_ *Options, vc *hypervisor.Config) { vc.VCPUs = 4 }, "limits"},
		{"virtio-fs", func(o *Options, _ *hypervisor.Config) { o.Config.Hypervisor.SharedFS = config.SharedFSVirtiofs }, "virtio-9p"},
		{"a disk", func(_ *Options, vc *hypervisor.Config) { vc.Blocks = []hypervisor.Block{{ID: "vol0", Path: "/x"}} }, "volumes"},
		{"no cache directory", func(_ *Options, vc *hypervisor.Config) { vc.CacheDir = "" }, "cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, vc := factoryOptions(t)
			tt.mutate(&opts, &vc)
			err := fitsTemplate(opts, vc)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("fitsTemplate = %v, want %q", err, tt.want)
			}
		})
	}
}

// A build that failed keeps the next containers from trying again for a while: each try would
// cost a container a cold boot more.
func TestFailedBuildIsNotRetriedAtOnce(t *testing.T) {
	opts, vc := factoryOptions(t)
	ts := templateStore{root: runtimecache.TemplatesDir(vc.CacheDir), key: "k", logf: t.Logf}
	// The fake QEMU is not executable: the build fails before any VM exists.
	err := ts.ensure(t.Context(), vc, opts.Config.Agent.BootTimeout.Duration())
	if err == nil {
		t.Fatal("the build succeeded with a fake QEMU")
	}
	if _, serr := os.Stat(ts.path(runtimecache.TemplateFailed)); serr != nil {
		t.Fatalf("no record of the failed build: %v", serr)
	}
	if err := ts.ensure(t.Context(), vc, 0); err == nil || !strings.Contains(err.Error(), "next try") {
		t.Errorf("the second container tried again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ts.root, runtimecache.TemplateBuildPrefix+"k")); !os.IsNotExist(err) {
		t.Errorf("the failed build left its directory: %v", err)
	}
}

func TestRemoveUnusedTemplates(t *testing.T) {
	root := t.TempDir()
	mk := func(dir, file string, age time.Duration) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, dir, file)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		then := time.Now().Add(-age)
		os.Chtimes(p, then, then)
	}
	mk("in-use", runtimecache.TemplateReady, time.Minute)                       // another configuration's, cloned lately
	mk("unused", runtimecache.TemplateReady, time.Hour)                         // an upgraded kernel's
	mk("failed", runtimecache.TemplateFailed, 0)                                // a failed build's record
	mk(runtimecache.TemplateBuildPrefix+"dead", runtimecache.TemplateMemory, 0) // a build a dead shim left
	os.WriteFile(filepath.Join(root, runtimecache.TemplateLock), nil, 0o600)
	templateStore{root: root, key: "k", logf: t.Logf}.removeUnused()
	var left []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != runtimecache.TemplateLock+" in-use" {
		t.Errorf("left %v, want the lock and the template in use", left)
	}
}

// TestDiscardSparesARebuild: a clone that failed removes the template it was given, but not one
// another container rebuilt meanwhile, and a template whose record is unreadable goes too.
func TestDiscardSparesARebuild(t *testing.T) {
	first := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name    string
		ready   string // the ready file in place at the discard
		removed bool
	}{
		{"the build the clone had", readyJSON(t, "k", first), true},
		{"a rebuild", readyJSON(t, "k", first.Add(time.Second)), false},
		{"an unreadable record", "{", true},
		{"another key's record", readyJSON(t, "other", first.Add(time.Second)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := templateStore{root: t.TempDir(), key: "k", logf: t.Logf}
			if err := os.MkdirAll(ts.dir(), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ts.path(runtimecache.TemplateReady), []byte(tt.ready), 0o600); err != nil {
				t.Fatal(err)
			}
			ts.discard(t.Context(), errors.New("the clone failed"), first)
			_, err := os.Stat(ts.dir())
			if gone := os.IsNotExist(err); gone != tt.removed {
				t.Errorf("template removed = %v, want %v", gone, tt.removed)
			}
		})
	}
}

func readyJSON(t *testing.T, key string, created time.Time) string {
	t.Helper()
	b, err := json.Marshal(runtimecache.ReadyFile{Key: key, Created: created})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
