// Package testguest builds the one guest image every VM test boots: Debian's kernel package and
// the real agent (./cmd/kata-agent, static), put together by the product's own builder,
// guestimage.Build. Images are cached on disk, keyed by the hashes of the kernel package and of
// the agent binary, so a test run rebuilds only when one of them changed. It is test tooling,
// not product code.
package testguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-deploy/kata-deploy/internal/testreq"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// CacheEnv overrides where kernel packages and guest images are kept.
const CacheEnv = "KATA_TEST_CACHE"

// AgentPackage is the guest agent every test image holds as /init.
const AgentPackage = "github.com/kata-deploy/kata-deploy/cmd/kata-agent"

// AgentVersion is the version stamp of binaries BuildStatic makes (the agent reports it).
const AgentVersion = "test"

// builderPackage is the product's image builder; its source is part of the cache key.
const builderPackage = "github.com/kata-deploy/kata-deploy/packaging/guestimage"

// Image is a built test guest image.
type Image struct {
	Dir       string // vmlinux, initrd.img and manifest.json, in the cache: never modify
	Vmlinux   string
	Initrd    string
	KernelDeb string
	Agent     string // the agent binary given to Build
	Manifest  *guestimage.Manifest
}

// CacheDir is where downloads and images shared between runs are kept: $KATA_TEST_CACHE,
// else /var/cache/kata-deploy/test for root, else the user's cache directory.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	if os.Geteuid() != 0 {
		if d, err := os.UserCacheDir(); err == nil {
			return filepath.Join(d, "kata-deploy", "test")
		}
	}
	return "/var/cache/kata-deploy/test"
}

// Get returns the test guest image for this tree's agent, skipping the test (failing under
// KATA_E2E_REQUIRED=1) when no kernel package can be had. Not with -short: it reads a 70 MB
// package the first time.
func Get(t testing.TB) *Image {
	t.Helper()
	testreq.Short(t, "builds a guest image from Debian's kernel package")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	deb, err := KernelDeb(ctx)
	if err != nil {
		testreq.Skipf(t, "no Debian kernel package: %v", err)
	}
	agent, err := BuildAgent(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := Build(ctx, deb, agent)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// KernelDeb returns Debian's generic kernel package from the cache, downloading it with apt-get
// the first time. Without apt, the newest package already in the cache is used.
func KernelDeb(ctx context.Context) (string, error) {
	dir := filepath.Join(CacheDir(), "kernel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the kernel cache: %w", err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return "", err
	}
	defer unlock()
	deb, err := guestimage.FetchDebianKernel(ctx, dir)
	if err == nil {
		return deb, nil
	}
	cached, _ := filepath.Glob(filepath.Join(dir, "linux-image-[0-9]*-amd64_*_amd64.deb"))
	cached = slices.DeleteFunc(cached, func(p string) bool { return strings.Contains(filepath.Base(p), "-cloud-") })
	if len(cached) == 0 {
		return "", fmt.Errorf("apt-get download into %s (run apt-get update, or put a linux-image-*-amd64 .deb there): %w", dir, err)
	}
	slices.Sort(cached)
	return cached[len(cached)-1], nil
}

// BuildAgent compiles the guest agent into dir, static (it runs in an initrd without libc) and
// with a fixed version stamp, so the same source gives the same bytes and the same cache key.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	return BuildStatic(ctx, dir, "kata-agent", AgentPackage)
}

// BuildStatic compiles pkg (an import path, or a directory relative to the calling test's
// package) into dir/name with CGO_ENABLED=0.
func BuildStatic(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -X main.version="+AgentVersion, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// Build returns the image made of the kernel package deb and the agent binary, building it with
// guestimage.Build unless the cache already holds it.
func Build(ctx context.Context, deb, agent string) (*Image, error) {
	key, err := cacheKey(ctx, deb, agent)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(CacheDir(), "guest", key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the guest image cache: %w", err)
	}
	// Test packages run in parallel: one builds, the others wait and reuse.
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	img := &Image{Dir: dir, Vmlinux: filepath.Join(dir, guestimage.VmlinuxName),
		Initrd: filepath.Join(dir, guestimage.InitrdName), KernelDeb: deb, Agent: agent}
	if img.Manifest, err = readManifest(dir); err == nil {
		return img, nil
	}
	if img.Manifest, err = guestimage.Build(ctx, guestimage.Options{KernelDeb: deb, AgentBinary: agent, OutDir: dir}); err != nil {
		return nil, fmt.Errorf("building the test guest image from %s: %w", deb, err)
	}
	return img, nil
}

// cacheKey names an image by what it is made of: the kernel package, the agent, and the
// builder's source (a changed builder must not be tested against images of the old one).
func cacheKey(ctx context.Context, deb, agent string) (string, error) {
	builder, err := builderSources(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, p := range builder {
		if err := hashFile(h, p); err != nil {
			return "", err
		}
	}
	b := hex.EncodeToString(h.Sum(nil))
	k, a := sha256.New(), sha256.New()
	if err := hashFile(k, deb); err != nil {
		return "", err
	}
	if err := hashFile(a, agent); err != nil {
		return "", err
	}
	return hex.EncodeToString(k.Sum(nil))[:16] + "-" + hex.EncodeToString(a.Sum(nil))[:16] + "-" + b[:8], nil
}

// builderSources lists the non-test Go files of the image builder.
func builderSources(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}`, builderPackage).Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w", builderPackage, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	return nil
}

// readManifest loads a cached image's manifest and checks the artifacts against it: Build
// writes the manifest last, so an interrupted build has none or a stale one.
func readManifest(dir string) (*guestimage.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, guestimage.ManifestName))
	if err != nil {
		return nil, err
	}
	var m guestimage.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cached manifest in %s: %w", dir, err)
	}
	for name, a := range m.Artifacts {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Size() != a.Size {
			return nil, fmt.Errorf("cached %s in %s does not match its manifest", name, dir)
		}
	}
	return &m, nil
}

// lock takes an exclusive lock on dir/.lock until the returned function is called.
func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking the test cache: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// BuildInit compiles a test's own /init (pkg, e.g. "./testdata/guestinit", static) and returns
// its bytes, for WithInit.
func BuildInit(t testing.TB, pkg string) []byte {
	t.Helper()
	path, err := BuildStatic(context.Background(), t.TempDir(), "init", pkg)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// WithInit returns a copy of the image's initrd whose /init is init: the kernel unpacks
// concatenated cpio archives in order, so the appended /init replaces the agent while the
// modules and their load list stay.
func (img *Image) WithInit(t testing.TB, init []byte) string {
	t.Helper()
	var extra bytes.Buffer
	if err := guestimage.WriteInitrd(&extra, []guestimage.File{{Path: guestimage.InitPath, Mode: 0o755, Data: init}}); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(t.TempDir(), guestimage.InitrdName)
	if err := os.WriteFile(initrd, append(base, extra.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return initrd
}
