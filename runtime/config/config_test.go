package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite configs/configuration-qemu.toml from Encode(Default())")

// shippedPath is the configuration the packages install.
const shippedPath = "../../configs/configuration-qemu.toml"

// fakeHost creates the files a valid configuration points at and returns a
// valid configuration using them.
func fakeHost(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Default()
	c.Hypervisor.Path = mk("qemu", 0o755)
	c.Hypervisor.Kernel = mk("vmlinux", 0o644)
	c.Hypervisor.Initrd = mk("initrd.img", 0o644)
	c.Hypervisor.Firmware = mk("qboot.rom", 0o644)
	c.Hypervisor.VirtiofsDaemon = mk("virtiofsd", 0o755)
	return c
}

// withPaths replaces the path keys of a TOML document with c's.
func withPaths(t *testing.T, doc []byte, c *Config) []byte {
	t.Helper()
	out := string(doc)
	for key, val := range map[string]string{
		"path": c.Hypervisor.Path, "kernel": c.Hypervisor.Kernel, "initrd": c.Hypervisor.Initrd,
		"firmware": c.Hypervisor.Firmware, "virtio_fs_daemon": c.Hypervisor.VirtiofsDaemon,
	} {
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, key+" = ") {
				l = key + " = " + quote(val)
			}
			lines = append(lines, l)
		}
		out = strings.Join(lines, "\n")
	}
	return []byte(out)
}

func TestDefaults(t *testing.T) {
	c, err := Decode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("an empty document should decode to Default():\n got %+v\nwant %+v", c, Default())
	}
	h := c.Hypervisor
	if h.MachineType != "q35" || h.Accelerator != "auto" || h.SharedFS != "virtio-9p" || h.VCPUs != 1 ||
		c.Agent.BootTimeout.Duration() != 30*time.Second || c.Runtime.StateDir != "/run/kata-deploy" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	// A key given in the document overrides only itself.
	c, err = Decode([]byte("[hypervisor]\ndefault_vcpus = 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.VCPUs != 4 || c.Hypervisor.MemoryMiB != DefaultMemoryMiB {
		t.Fatalf("partial document: vcpus=%d memory=%d", c.Hypervisor.VCPUs, c.Hypervisor.MemoryMiB)
	}
}

func TestShippedConfig(t *testing.T) {
	want, err := Encode(Default())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(shippedPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(shippedPath)
	if err != nil {
		t.Fatalf("%v (create it with: go test ./runtime/config -run TestShippedConfig -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from Encode(Default()): regenerate it with go test ./runtime/config -run TestShippedConfig -update", shippedPath)
	}
	host := fakeHost(t)
	c, err := Parse(withPaths(t, got, host))
	if err != nil {
		t.Fatalf("shipped configuration with host paths does not validate: %v", err)
	}
	if !reflect.DeepEqual(c, host) {
		t.Fatalf("shipped configuration decodes to\n%+v\nwant\n%+v", c, host)
	}
}

func TestEveryKeyDocumented(t *testing.T) {
	docs := keyDocs()
	n := 0
	v := reflect.TypeOf(Config{})
	for i := range v.NumField() {
		table := v.Field(i).Tag.Get("toml")
		if _, ok := sectionDocs()[table]; !ok {
			t.Errorf("table %s has no documentation", table)
		}
		st := v.Field(i).Type
		for j := range st.NumField() {
			n++
			if k := table + "." + st.Field(j).Tag.Get("toml"); docs[k] == "" {
				t.Errorf("key %s has no documentation", k)
			}
		}
	}
	if n != len(docs) {
		t.Errorf("%d keys but %d documented: remove documentation of keys that no longer exist", n, len(docs))
	}
}

func TestRoundTrip(t *testing.T) {
	c := fakeHost(t)
	c.Hypervisor.KernelParams = `loglevel=7 quote="x\y" tab	end`
	c.Hypervisor.Firmware = ""
	c.Hypervisor.Accelerator = AccelTCG
	c.Hypervisor.SharedFS = SharedFSVirtiofs
	c.Hypervisor.VCPUs = 3
	c.Hypervisor.MemoryMiB = 1024
	c.Hypervisor.MemoryOverheadMiB = 0
	c.Agent = Agent{Debug: true, BootTimeout: Duration(90 * time.Second)}
	c.Runtime = Runtime{StateDir: "/run/kd", Debug: true}
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip changed the configuration:\n got %+v\nwant %+v\n%s", got, c, data)
	}
}

func TestLoad(t *testing.T) {
	c := fakeHost(t)
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "configuration-qemu.toml")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("[hypervisor]\nkernel = \"vmlinux\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "hypervisor.kernel") {
		t.Fatalf("Load error should name the file and the key: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "kata-deploy install") {
		t.Fatalf("missing file should suggest a fix: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown key", "[hypervisor]\npath = \"/usr/bin/qemu\"\nkernal = \"/x\"\n", []string{"line 3", "hypervisor.kernal", "spelling"}},
		{"unknown table", "\n[hypervisr]\npath = \"/x\"\n", []string{"line 2", "hypervisr"}},
		{"wrong type", "[hypervisor]\ndefault_vcpus = \"two\"\n", []string{"line 2", "hypervisor.default_vcpus"}},
		{"bad duration", "[agent]\nboot_timeout = \"soon\"\n", []string{"line 2", "30s"}},
		{"float duration", "[agent]\nboot_timeout = 1.5\n", []string{"not a duration", "30s"}},
		{"syntax", "[hypervisor\n", []string{"line 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // "" means valid
	}{
		{"valid", func(c *Config) {}, ""},
		{"no firmware is fine", func(c *Config) { c.Hypervisor.Firmware = "" }, ""},
		{"versioned machine", func(c *Config) { c.Hypervisor.MachineType = "pc-q35-7.2" }, ""},
		{"virtiofs", func(c *Config) { c.Hypervisor.SharedFS = SharedFSVirtiofs }, ""},
		{"pool of clones", func(c *Config) { c.Factory.Template, c.Factory.Pool = true, 2 }, ""},
		{"translation buffer", func(c *Config) { c.Hypervisor.TCGTranslationMiB = 24 }, ""},
		{"tiny translation buffer", func(c *Config) { c.Hypervisor.TCGTranslationMiB = 1 }, "hypervisor.tcg_translation_buffer = 1 is out of range"},
		{"relative kernel", func(c *Config) { c.Hypervisor.Kernel = "vmlinux" }, "hypervisor.kernel = \"vmlinux\" is relative"},
		{"unclean path", func(c *Config) { c.Hypervisor.Initrd = "/a/../b" }, "write it as \"/b\""},
		{"comma in path", func(c *Config) { c.Hypervisor.Initrd = "/a,b" }, "comma"},
		{"missing kernel", func(c *Config) { c.Hypervisor.Kernel = "/nonexistent/vmlinux" }, "hypervisor.kernel"},
		{"empty qemu", func(c *Config) { c.Hypervisor.Path = "" }, "hypervisor.path is empty"},
		{"qemu not executable", func(c *Config) { c.Hypervisor.Path = c.Hypervisor.Kernel }, "not executable"},
		{"kernel is a directory", func(c *Config) { c.Hypervisor.Kernel = "/" }, "not a regular file"},
		{"bad accelerator", func(c *Config) { c.Hypervisor.Accelerator = "hvf" }, "hypervisor.accelerator = \"hvf\""},
		{"bad shared fs", func(c *Config) { c.Hypervisor.SharedFS = "nfs" }, "hypervisor.shared_fs"},
		{"bad machine", func(c *Config) { c.Hypervisor.MachineType = "microvm" }, "hypervisor.machine_type"},
		{"bad versioned machine", func(c *Config) { c.Hypervisor.MachineType = "pc-q35-" }, "hypervisor.machine_type"},
		{"zero vcpus", func(c *Config) { c.Hypervisor.VCPUs = 0 }, "hypervisor.default_vcpus = 0 is out of range"},
		{"memory in bytes", func(c *Config) { c.Hypervisor.MemoryMiB = 512 << 20 }, "hypervisor.default_memory"},
		{"negative overhead", func(c *Config) { c.Hypervisor.MemoryOverheadMiB = -1 }, "hypervisor.memory_overhead"},
		{"newline in params", func(c *Config) { c.Hypervisor.KernelParams = "a\nb" }, "hypervisor.kernel_params"},
		{"huge params", func(c *Config) { c.Hypervisor.KernelParams = strings.Repeat("x", 2000) }, "hypervisor.kernel_params"},
		{"virtiofs without daemon", func(c *Config) {
			c.Hypervisor.SharedFS = SharedFSVirtiofs
			c.Hypervisor.VirtiofsDaemon = ""
		}, "virtio_fs_daemon is empty"},
		{"virtiofs daemon missing", func(c *Config) {
			c.Hypervisor.SharedFS = SharedFSVirtiofs
			c.Hypervisor.VirtiofsDaemon = "/nonexistent/virtiofsd"
		}, "hypervisor.virtio_fs_daemon"},
		{"daemon unused but relative", func(c *Config) { c.Hypervisor.VirtiofsDaemon = "virtiofsd" }, "relative"},
		{"boot timeout too short", func(c *Config) { c.Agent.BootTimeout = Duration(time.Millisecond) }, "agent.boot_timeout"},
		{"boot timeout too long", func(c *Config) { c.Agent.BootTimeout = Duration(time.Hour) }, "agent.boot_timeout = 1h0m0s is out of range"},
		{"relative state dir", func(c *Config) { c.Runtime.StateDir = "run/kd" }, "runtime.state_dir"},
		{"root state dir", func(c *Config) { c.Runtime.StateDir = "/" }, "root directory"},
		{"long state dir", func(c *Config) { c.Runtime.StateDir = "/var/lib/kata-deploy/state/virtual-machines" }, "108-byte"},
		{"pool without template", func(c *Config) { c.Factory.Pool = 2 }, "factory.pool = 2 needs factory.template = true"},
		{"negative pool", func(c *Config) { c.Factory.Template, c.Factory.Pool = true, -1 }, "factory.pool = -1 is out of range"},
		{"huge pool", func(c *Config) { c.Factory.Template, c.Factory.Pool = true, 100 }, "factory.pool = 100 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeHost(t)
			tt.mutate(c)
			err := c.Validate()
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

func TestValidateReportsAll(t *testing.T) {
	c := fakeHost(t)
	c.Hypervisor.VCPUs = 0
	c.Hypervisor.Accelerator = "x"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "default_vcpus") || !strings.Contains(err.Error(), "accelerator") {
		t.Fatalf("both problems should be reported: %v", err)
	}
}

func TestKernelParamList(t *testing.T) {
	h := Hypervisor{KernelParams: "  a=1  b\tc=x "}
	if got := h.KernelParamList(); !reflect.DeepEqual(got, []string{"a=1", "b", "c=x"}) {
		t.Fatalf("got %q", got)
	}
}
