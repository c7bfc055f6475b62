package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-deploy/kata-deploy/installer/manifest"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// buildImage builds the guest image in a scratch directory under the prefix, then moves its
// files into place (vmlinux and initrd.img first, the image manifest last), journaling the
// files before the moves and recording them after.
func (x *installer) buildImage(ctx context.Context, p *plan) error {
	ip := p.image
	if !ip.Needed {
		if x.m.Image != nil {
			x.res.GuestKernel = x.m.Image.KernelVersion
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
	x.o.progress(fmt.Sprintf("building the guest image from %s (this takes a while)", filepath.Base(ip.Kernel.Path)))
	gm, err := x.d.BuildImage(ctx, guestimage.Options{
		KernelDeb:   ip.Kernel.Path,
		AgentBinary: ip.Agent.Path,
		OutDir:      staging,
		Progress:    func(s string) { x.o.progress("  " + s) },
	})
	if err != nil {
		return fmt.Errorf("building the guest image: %w", err)
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
	x.m.Image = &manifest.Image{Key: ip.Key, KernelPackage: ip.Kernel.Path, KernelSHA256: ip.Kernel.SHA256,
		AgentSHA256: ip.Agent.SHA256, KernelVersion: gm.KernelVersion}
	x.res.GuestKernel = gm.KernelVersion
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("removing %s: %w", staging, err)
	}
	x.m.Scratch = slices.DeleteFunc(x.m.Scratch, func(s string) bool { return s == staging })
	return x.done(StepImage)
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
