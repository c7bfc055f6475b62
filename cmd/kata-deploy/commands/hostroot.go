package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/kata-deploy/kata-deploy/installer/hostroot"
	"github.com/kata-deploy/kata-deploy/installer/install"
	"github.com/kata-deploy/kata-deploy/installer/pluginsvc"
	"github.com/kata-deploy/kata-deploy/internal/layout"
)

// bindHostRoot binds --host-root, whose default the installer image sets.
func bindHostRoot(f *pflag.FlagSet, dir *string) {
	f.StringVar(dir, "host-root", os.Getenv(hostroot.EnvVar),
		"the host's root directory as mounted here, when kata-deploy runs in a container (docker run --privileged --pid=host -v /:/host IMAGE); every other path is the host's (default $"+hostroot.EnvVar+")")
}

// hostInputs are the files a command reads from where kata-deploy runs (the image), not from
// the host: they are copied into the host before entering it.
type hostInputs struct {
	artifacts *install.ArtifactOptions // nil: the command builds no version
	from      *string                  // nil or empty: no upstream release
	// dryRun: the kernel package too goes into the staging directory, so that nothing of the
	// host changes.
	dryRun bool
	// plugins: kata-plugins is staged too (install --with-plugins).
	plugins bool
}

// enterHost does nothing without a host root. With one, it copies the inputs into the host
// (the shim and agent into a directory of the host's /run removed by the returned cleanup, the
// kernel package into the host's kernel cache, where later commands find it), points the
// options at the copies, and makes the host's root this process's root.
func enterHost(dir string, in hostInputs) (cleanup func(), err error) {
	root, ok, err := hostroot.Open(dir)
	if err != nil || !ok {
		return func() {}, err
	}
	from := in.from != nil && *in.from != ""
	if in.artifacts == nil && !from {
		return func() {}, root.Enter()
	}
	st, err := root.NewStaging()
	if err != nil {
		return nil, err
	}
	cleanup = func() { _ = st.Remove() }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if from {
		if *in.from, err = st.Copy(*in.from); err != nil {
			return nil, err
		}
	} else if in.artifacts != nil {
		if err := stageArtifacts(root, st, in.artifacts, in.dryRun, in.plugins); err != nil {
			return nil, err
		}
	}
	if err := root.Enter(); err != nil {
		return nil, err
	}
	return cleanup, nil
}

// stageArtifacts copies the shim and the agent (from --artifacts-dir, else this executable's
// directory) and the kernel package (--kernel, else the one the image carries beside them; into
// the host's kernel cache, or with the others for a dry run).
func stageArtifacts(root hostroot.Root, st *hostroot.Staging, a *install.ArtifactOptions, dryRun, plugins bool) error {
	src := a.ArtifactsDir
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding kata-deploy's own directory: %w; pass --artifacts-dir", err)
		}
		src = filepath.Dir(exe)
	}
	names := []string{layout.ShimName, layout.AgentName}
	if plugins {
		names = append(names, pluginsvc.BinaryName)
	}
	for _, name := range names {
		if _, err := st.Copy(filepath.Join(src, name)); err != nil {
			return fmt.Errorf("%s: %w; pass --artifacts-dir", name, err)
		}
	}
	a.ArtifactsDir = st.HostDir()
	kernel := a.Kernel
	if kernel == "" {
		k, err := hostroot.ImageKernel(src)
		if errors.Is(err, hostroot.ErrNoKernel) {
			return nil // the host's own kernel package, as without a host root
		}
		if err != nil {
			return err
		}
		kernel = k
	}
	var err error
	if dryRun {
		a.Kernel, err = st.Copy(kernel)
		return err
	}
	cache := a.KernelCache
	if cache == "" {
		cache = install.DefaultKernelCache
	}
	a.Kernel, err = root.CopyInto(kernel, cache)
	return err
}
