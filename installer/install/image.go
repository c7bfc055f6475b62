package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/internal/layout"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// buildImage builds the guest image in a scratch directory under the prefix, then moves its
// files into place (vmlinux and initrd.img first, the image manifest last), journaling the
// files before the moves and recording them after.
func (x *installer) buildImage(ctx context.Context, p *plan) error {
	ip := p.image
	version := x.m.FindVersion(p.layout.Version)
	if !ip.Needed {
		if version.Image != nil {
			x.res.GuestKernel = version.Image.KernelVersion
		}
		return nil
	}
	staging := p.layout.Staging()
	if !slices.Contains(x.m.Scratch, staging) {
		x.m.Scratch = append(x.m.Scratch, staging)
		if err := x.save(); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(staging); err != nil { // what a killed build left
		return fmt.Errorf("clearing %s: %w", staging, err)
	}
	kernelVersion, err := x.reuseImage(ip.Key, p.layout, staging)
	if err != nil {
		return err
	}
	if kernelVersion == "" {
		if kernelVersion, err = x.build(ctx, ip, staging); err != nil {
			return err
		}
	}
	x.after(StepImageStaged)
	moves := [][2]string{
		{filepath.Join(staging, guestimage.VmlinuxName), p.layout.Vmlinux()},
		{filepath.Join(staging, guestimage.InitrdName), p.layout.Initrd()},
		{filepath.Join(staging, guestimage.ManifestName), p.layout.ImageManifest()},
	}
	if err := x.placeImage(ip, moves); err != nil {
		return err
	}
	version.Image = &manifest.Image{Key: ip.Key, KernelPackage: ip.Kernel.Path, KernelSHA256: ip.Kernel.SHA256,
		AgentSHA256: ip.Agent.SHA256, KernelVersion: kernelVersion}
	x.res.GuestKernel = kernelVersion
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("removing %s: %w", staging, err)
	}
	x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool { return s == staging })
	return x.done(StepImage)
}

// build builds the guest image into staging from private copies of the kernel package and the
// agent, each made in one read that is hashed and must match the plan: the image is built from
// exactly the bytes that were checked, whatever happens to the originals meanwhile.
func (x *installer) build(ctx context.Context, ip imagePlan, staging string) (string, error) {
	private, err := os.MkdirTemp("", "kata-deploy-inputs-")
	if err != nil {
		return "", fmt.Errorf("building the guest image: %w", err)
	}
	defer os.RemoveAll(private)
	kernel, err := privateCopy(*ip.Kernel, private)
	if err != nil {
		return "", err
	}
	agent, err := privateCopy(ip.Agent, private)
	if err != nil {
		return "", err
	}
	x.o.progress(fmt.Sprintf("building the guest image from %s (this takes a while)", filepath.Base(ip.Kernel.Path)))
	gm, err := x.d.BuildImage(ctx, guestimage.Options{
		KernelDeb:   kernel,
		AgentBinary: agent,
		OutDir:      staging,
		Progress:    func(s string) { x.o.progress("  " + s) },
	})
	if err != nil {
		return "", fmt.Errorf("building the guest image: %w", err)
	}
	return gm.KernelVersion, nil
}

// privateCopy copies s into dir (a directory only root can enter) under its own name, mode
// 0600, hashing what it copies, and refuses a copy whose SHA-256 is not the planned one.
func privateCopy(s source, dir string) (string, error) {
	in, err := os.Open(s.Path)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file (%v)", s.Path, err)
	}
	dst := filepath.Join(dir, filepath.Base(s.Path))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("copying %s: %w", s.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return "", fmt.Errorf("%s changed while installing (sha256 %s, planned %s): nothing was built from it; run install again", s.Path, got, s.SHA256)
	}
	return dst, nil
}

// placeImage moves the staged files over the installed ones.
func (x *installer) placeImage(ip imagePlan, moves [][2]string) error {
	sums := make([]string, len(moves))
	for i, mv := range moves {
		sum, size, err := fileSum(mv[0])
		if err != nil || sum == "" {
			return fmt.Errorf("the built image lacks %s: %v", filepath.Base(mv[0]), err)
		}
		sums[i] = sum
		rec := manifest.File{Path: mv[1], Mode: 0o644, Size: size}
		if old := x.m.File(mv[1]); old != nil {
			rec = *old
			rec.Size = size
		}
		rec.PendingSHA256 = sum
		if f := ip.Files[i]; f.State == fileForeign {
			rec.Previous = &manifest.Previous{SHA256: f.Cur, SavedAs: mv[1] + ".kata-deploy-orig-" + x.now().UTC().Format("20060102T150405Z")}
		}
		x.m.PutFile(rec)
	}
	if err := x.save(); err != nil {
		return err
	}
	for i, mv := range moves {
		if prev := x.m.File(mv[1]).Previous; prev != nil && ip.Files[i].State == fileForeign {
			if err := renameSynced(mv[1], prev.SavedAs); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("moving %s aside: %w", mv[1], err)
			}
		}
		if err := renameSynced(mv[0], mv[1]); err != nil {
			return fmt.Errorf("installing %s: %w", mv[1], err)
		}
	}
	for i, mv := range moves {
		rec := x.m.File(mv[1])
		rec.SHA256, rec.PendingSHA256 = sums[i], ""
	}
	return nil
}

// reuseImage copies into staging the guest image of another version (or of the flat layout) built
// from the same kernel and agent, when its files are intact: a new version that changes only the
// shim or the configuration then skips the build, the slow part. It returns the image's kernel
// version, or "" when there is nothing to reuse.
func (x *installer) reuseImage(key string, target layout.Layout, staging string) (string, error) {
	src, img := reusableImage(x.m, key, target.Version)
	if img == nil {
		return "", nil
	}
	x.o.progress(fmt.Sprintf("reusing the guest image of %s (same kernel and agent)", src.Root()))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return "", err
	}
	names := []string{guestimage.VmlinuxName, guestimage.InitrdName, guestimage.ManifestName}
	for i, f := range imageFiles(src) {
		if err := copyFile(f, filepath.Join(staging, names[i])); err != nil {
			return "", fmt.Errorf("copying the guest image from %s: %w", src.Root(), err)
		}
	}
	return img.KernelVersion, nil
}

// reusableImage finds an intact guest image built from the same inputs (key) in another version
// than target, or in the flat layout; nil when there is none.
func reusableImage(m *manifest.Manifest, key, target string) (layout.Layout, *manifest.Image) {
	if m == nil || key == "" {
		return layout.Layout{}, nil
	}
	for _, v := range m.Versions {
		l := layout.Layout{Prefix: m.Prefix, Version: v.ID}
		if v.ID != target && v.Ready && v.Image != nil && v.Image.Key == key && intact(m, imageFiles(l)) {
			return l, v.Image
		}
	}
	if l := (layout.Layout{Prefix: m.Prefix}); m.Image != nil && m.Image.Key == key && intact(m, imageFiles(l)) {
		return l, m.Image
	}
	return layout.Layout{}, nil
}

func imageFiles(l layout.Layout) []string {
	return []string{l.Vmlinux(), l.Initrd(), l.ImageManifest()}
}

// intact reports whether every file is recorded and on disk as recorded.
func intact(m *manifest.Manifest, paths []string) bool {
	for _, p := range paths {
		rec := m.File(p)
		if rec == nil {
			return false
		}
		if sum, _, err := fileSum(p); err != nil || sum != rec.SHA256 || rec.PendingSHA256 != "" {
			return false
		}
	}
	return true
}

// copyFile copies a regular file (0644) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
