package install

import (
	"context"
	"fmt"
	"strings"

	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/hostinfo"
)

// Smoke is the outcome of the smoke container.
type Smoke struct {
	Image string `json:"image,omitempty"`
	// Skipped says why no container ran ("" when one did).
	Skipped string `json:"skipped,omitempty"`
	// GuestKernel is what `uname -r` printed inside the container.
	GuestKernel string `json:"guestKernel,omitempty"`
	// Seconds is from the start request to the container's exit.
	Seconds float64 `json:"seconds,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// smoke runs `uname -r` in a container of the new runtime: it must print the guest kernel.
func (x *installer) smoke(ctx context.Context) error {
	s := &Smoke{}
	x.res.Smoke = s
	if x.o.SkipSmoke {
		s.Skipped = "--skip-smoke"
		return nil
	}
	image, err := x.smokeImage(ctx)
	if err != nil || image == "" {
		s.Skipped = "no image to run"
		return err
	}
	s.Image = image
	x.o.progress(fmt.Sprintf("smoke test: docker run --rm --runtime=%s %s uname -r", x.o.RuntimeName, image))
	r, err := x.docker.Run(ctx, dockerapi.RunOptions{Runtime: x.o.RuntimeName, Image: image, Cmd: []string{"uname", "-r"}})
	s.Seconds = r.Duration.Seconds()
	if err == nil && r.ExitCode != 0 {
		err = fmt.Errorf("the container exited with status %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	s.GuestKernel = strings.TrimSpace(r.Stdout)
	want := x.res.GuestKernel
	if err == nil && want != "" && s.GuestKernel != want {
		err = fmt.Errorf("the container printed kernel %q, not the guest's %q: it did not run in a VM", s.GuestKernel, want)
	}
	if host, herr := hostinfo.KernelRelease(); err == nil && want == "" && herr == nil && s.GuestKernel == host {
		// An upstream release's guest kernel is not known here; the host's it must not be.
		err = fmt.Errorf("the container printed the host's kernel %q: it did not run in a VM", host)
	}
	if err != nil {
		s.Error = err.Error()
		return fmt.Errorf("the runtime is installed and registered, but the smoke test failed: %w (see `kata-deploy status`; `kata-deploy uninstall` removes it)", err)
	}
	return nil
}

// smokeImage is --smoke-image, else busybox when it is present locally; nothing is pulled.
func (x *installer) smokeImage(ctx context.Context) (string, error) {
	if x.o.SmokeImage != "" {
		ok, err := x.docker.HasImage(ctx, x.o.SmokeImage)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("--smoke-image %s is not present locally (kata-deploy does not pull): pull or load it first", x.o.SmokeImage)
		}
		return x.o.SmokeImage, nil
	}
	ok, err := x.docker.HasImage(ctx, DefaultSmokeImage)
	if err != nil {
		return "", err
	}
	if !ok {
		x.warn("smoke test skipped: no busybox image here; pass --smoke-image IMAGE (any local image with uname), or --skip-smoke")
		return "", nil
	}
	return DefaultSmokeImage, nil
}
