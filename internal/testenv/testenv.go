// Package testenv sets up the VM runtime against the test engine (hack/engine.sh) for the
// end-to-end tests and the benchmarks: it builds the shim and the agent, builds a guest image from
// Debian's kernel package, writes a runtime configuration and registers the runtime in the
// engine's daemon.json. It is test tooling, not product code.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kata-deploy/kata-deploy/internal/testguest"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
	"github.com/kata-deploy/kata-deploy/runtime/config"
)

// Kata is a runtime built and registered for tests.
type Kata struct {
	Name        string // the runtime name in daemon.json
	BinDir      string // containerd-shim-kata-v2 and kata-agent
	ImageDir    string // vmlinux, initrd.img, manifest.json: the shared test image, never modify
	ConfigPath  string
	Config      *config.Config
	GuestKernel string // what `uname -r` prints in the guest
	// Unregister removes the runtime from the engine's daemon.json again.
	Unregister func()
}

// StateDir is the runtime state directory used by tests. It must stay short: the agent's unix
// socket lives under it, and socket paths are limited to 107 bytes.
const StateDir = "/run/kata-e2e"

// Cache is where downloads and images shared between runs are kept (internal/testguest).
func Cache() string { return testguest.CacheDir() }

// EngineUp reports whether the test engine's environment is loaded.
func EngineUp() bool {
	return os.Getenv("KATA_TEST_ENGINE") != "" && os.Getenv("DOCKER_HOST") != ""
}

// SetUpKata builds the shim into binDir, takes the test guest image (internal/testguest, with
// this tree's agent) and registers the runtime as name.
func SetUpKata(ctx context.Context, binDir, name string) (*Kata, error) {
	k := &Kata{Name: name, BinDir: binDir}
	shim := filepath.Join(binDir, "containerd-shim-kata-v2")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", shim, "github.com/kata-deploy/kata-deploy/cmd/containerd-shim-kata-v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the shim: %w\n%s", err, out)
	}
	agent, err := testguest.BuildAgent(ctx, binDir)
	if err != nil {
		return nil, err
	}
	deb, err := KernelDeb(ctx)
	if err != nil {
		return nil, err
	}
	img, err := testguest.Build(ctx, deb, agent)
	if err != nil {
		return nil, err
	}
	k.ImageDir, k.GuestKernel = img.Dir, img.Manifest.KernelVersion
	if err := k.writeConfig(); err != nil {
		return nil, err
	}
	if k.Unregister, err = RegisterRuntime(name, shim, k.ConfigPath); err != nil {
		return nil, err
	}
	return k, nil
}

// KernelDeb returns Debian's kernel package from the test cache, downloading it the first time.
func KernelDeb(ctx context.Context) (string, error) { return testguest.KernelDeb(ctx) }

// TemplateEnv, set to 1, turns VM templating on ([factory] template = true) in the runtime
// configuration the tests register, so that the same tests run in clones of a template VM.
const TemplateEnv = "KATA_E2E_TEMPLATE"

// PoolEnv, set to N with TemplateEnv, keeps a pool of N restored clones ([factory] pool = N), so
// that the tests' containers take clones that were started before them.
const PoolEnv = "KATA_E2E_POOL"

func (k *Kata) writeConfig() error {
	var err error
	k.ConfigPath = filepath.Join(k.BinDir, "configuration-qemu.toml")
	k.Config, err = k.writeConfigFile(k.ConfigPath, func(c *config.Config) {
		c.Factory.Template = os.Getenv(TemplateEnv) == "1"
		if n, err := strconv.Atoi(os.Getenv(PoolEnv)); err == nil && c.Factory.Template {
			c.Factory.Pool = n
		}
	})
	return err
}

// writeConfigFile writes the runtime configuration for this image, changed by mutate.
func (k *Kata) writeConfigFile(path string, mutate func(*config.Config)) (*config.Config, error) {
	cfg := config.Default()
	cfg.Hypervisor.Kernel = filepath.Join(k.ImageDir, guestimage.VmlinuxName)
	cfg.Hypervisor.Initrd = filepath.Join(k.ImageDir, guestimage.InitrdName)
	cfg.Runtime.StateDir = StateDir
	if mutate != nil {
		mutate(cfg)
	}
	data, err := config.Encode(cfg)
	if err != nil {
		return nil, err
	}
	parsed, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("the generated runtime configuration does not parse back: %w", err)
	}
	return parsed, os.WriteFile(path, data, 0o644)
}

// RegisterVariant registers the same shim and image under another name with a changed
// configuration (e.g. virtio-fs instead of virtio-9p). The returned function unregisters it.
func (k *Kata) RegisterVariant(name string, mutate func(*config.Config)) (func(), error) {
	path := filepath.Join(k.BinDir, "configuration-"+name+".toml")
	if _, err := k.writeConfigFile(path, mutate); err != nil {
		return nil, err
	}
	return RegisterRuntime(name, filepath.Join(k.BinDir, "containerd-shim-kata-v2"), path)
}

// RegisterRuntime adds a runtime to the test engine's daemon.json (a file the tests own, given by
// KATA_TEST_DAEMON_JSON) and reloads dockerd until `docker info` lists it. The returned function
// removes it again.
func RegisterRuntime(name, shim, configPath string) (func(), error) {
	path := os.Getenv("KATA_TEST_DAEMON_JSON")
	doc, err := readJSON(path)
	if err != nil {
		return nil, err
	}
	runtimes, _ := doc["runtimes"].(map[string]any)
	if runtimes == nil {
		runtimes = map[string]any{}
	}
	runtimes[name] = map[string]any{"runtimeType": shim, "options": map[string]any{"ConfigPath": configPath}}
	doc["runtimes"] = runtimes
	if err := writeJSON(path, doc); err != nil {
		return nil, err
	}
	unregister := func() {
		if doc, err := readJSON(path); err == nil {
			if rt, ok := doc["runtimes"].(map[string]any); ok {
				delete(rt, name)
			}
			writeJSON(path, doc)
			ReloadDockerd()
		}
	}
	if err := ReloadDockerd(); err != nil {
		return nil, err
	}
	for i := 0; i < 100; i++ {
		out, _ := exec.Command("docker", "info", "--format", "{{json .Runtimes}}").Output()
		if strings.Contains(string(out), `"`+name+`"`) {
			return unregister, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	unregister()
	return nil, fmt.Errorf("dockerd did not list runtime %q after a reload", name)
}

func readJSON(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{}
	if strings.TrimSpace(string(data)) != "" {
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("the test engine's daemon.json: %w", err)
		}
	}
	return doc, nil
}

func writeJSON(path string, doc map[string]any) error {
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReloadDockerd sends SIGHUP to the test engine's dockerd.
func ReloadDockerd() error {
	data, err := os.ReadFile(os.Getenv("KATA_TEST_DOCKERD_PIDFILE"))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}
