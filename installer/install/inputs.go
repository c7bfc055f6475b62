package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// inputs are the built-in runtime's artifacts.
type inputs struct {
	shim   source
	agent  source
	kernel *source // nil: to be fetched (dry run)
}

// resolveInputs finds the shim and the agent (next to kata-deploy, or in --artifacts-dir) and
// the kernel package: --kernel, else the one a previous install used (no network, and a rerun
// stays a no-op), else the distribution's, fetched now (not on a dry run).
func (x *installer) resolveInputs(ctx context.Context, m *manifest.Manifest) (inputs, error) {
	var in inputs
	dir, err := x.artifactsDir()
	if err != nil {
		return in, err
	}
	if in.shim, err = artifact(dir, layout.ShimName); err != nil {
		return in, err
	}
	if in.agent, err = artifact(dir, layout.AgentName); err != nil {
		return in, err
	}
	kernel := x.o.Kernel
	if img := currentImage(m); kernel == "" && img != nil && img.KernelPackage != "" {
		if _, err := os.Stat(img.KernelPackage); err == nil {
			// The path proves nothing: what is there now must be what the install recorded.
			k, err := sourceOf(img.KernelPackage)
			if err != nil {
				return in, fmt.Errorf("the kernel package the install under %s recorded: %w", x.o.Prefix, err)
			}
			if img.KernelSHA256 == "" || k.SHA256 != img.KernelSHA256 {
				return in, fmt.Errorf("%s, the kernel package the install under %s recorded, changed since (sha256 %s, recorded %s): it is not used; put the original back, "+
					"or pass --kernel with the linux-image-*.deb to build the guest from (or delete %s to have the distribution's fetched)",
					img.KernelPackage, x.o.Prefix, k.SHA256, img.KernelSHA256, img.KernelPackage)
			}
			in.kernel = &k
			return in, nil
		}
	}
	if kernel == "" {
		if x.o.DryRun {
			return in, nil
		}
		x.o.progress("fetching the distribution's kernel package into " + x.o.KernelCache + " (apt-get download)")
		if kernel, err = x.d.FetchKernel(ctx, x.o.KernelCache); err != nil {
			return in, fmt.Errorf("fetching the guest kernel: %w; or pass --kernel linux-image-*.deb", err)
		}
	}
	k, err := sourceOf(kernel)
	if err != nil {
		return in, fmt.Errorf("--kernel: %w", err)
	}
	in.kernel = &k
	return in, nil
}

func (x *installer) artifactsDir() (string, error) {
	if x.o.ArtifactsDir != "" {
		return x.o.ArtifactsDir, nil
	}
	exe, err := x.d.Executable()
	if err != nil {
		return "", fmt.Errorf("finding kata-deploy's own directory: %w; pass --artifacts-dir", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Dir(exe), nil
}

func artifact(dir, name string) (source, error) {
	s, err := sourceOf(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("%s is not in %s: build it (make build puts it next to kata-deploy in bin/) or pass --artifacts-dir", name, dir)
	}
	return s, err
}

func sourceOf(path string) (source, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return source{}, err
	}
	if _, err := os.Stat(abs); err != nil {
		return source{}, err
	}
	sum, size, err := fileSum(abs)
	if err != nil {
		return source{}, err
	}
	return source{Path: abs, SHA256: sum, Size: size}, nil
}

// currentImage is the record of the guest image in use: the current version's, or the flat
// layout's.
func currentImage(m *manifest.Manifest) *manifest.Image {
	switch {
	case m == nil:
		return nil
	case m.Versioned():
		if v := m.FindVersion(m.Current); v != nil {
			return v.Image
		}
		return nil
	}
	return m.Image
}
