package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"

	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// validConfig writes a configuration whose files exist, and returns its path.
func validConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	for _, p := range []*string{&cfg.Hypervisor.Kernel, &cfg.Hypervisor.Initrd} {
		*p = filepath.Join(dir, filepath.Base(*p))
		os.WriteFile(*p, []byte("x"), 0o644)
	}
	cfg.Hypervisor.Path = "/bin/true"
	cfg.Hypervisor.Firmware = ""
	data, err := config.Encode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "configuration-qemu.toml")
	os.WriteFile(path, data, 0o644)
	return path
}

func TestLoadConfigFromRuntimeOptions(t *testing.T) {
	path := validConfig(t)
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(&taskAPI.CreateTaskRequest{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Hypervisor.Kernel, filepath.Dir(path)) {
		t.Errorf("loaded kernel %q, not the one from %s", cfg.Hypervisor.Kernel, path)
	}

	bad, _ := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: "/nonexistent/config.toml"})
	if _, err := loadConfig(&taskAPI.CreateTaskRequest{Options: bad}); err == nil || !strings.Contains(err.Error(), "/nonexistent/config.toml") {
		t.Errorf("missing config: err = %v, want it to name the path", err)
	}
}

func TestLoadConfigDefaultPathFromEnv(t *testing.T) {
	t.Setenv("KATA_CONFIG_PATH", validConfig(t))
	if _, err := loadConfig(&taskAPI.CreateTaskRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := readSpec(dir); err == nil || !strings.Contains(err.Error(), "OCI spec") {
		t.Errorf("no config.json: err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion": "1.0.2"}`), 0o600)
	if _, err := readSpec(dir); err == nil || !strings.Contains(err.Error(), "no process") {
		t.Errorf("spec without process: err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"process": {"args": ["sh"]}, "root": {"path": "rootfs"}}`), 0o600)
	spec, err := readSpec(dir)
	if err != nil || spec.Process.Args[0] != "sh" {
		t.Errorf("readSpec = %+v, %v", spec, err)
	}
}
