package install

import (
	"context"
	"os"
	"time"

	"github.com/kata-deploy/kata-deploy/installer/check"
	"github.com/kata-deploy/kata-deploy/installer/containerdsvc"
	"github.com/kata-deploy/kata-deploy/installer/dockerapi"
	"github.com/kata-deploy/kata-deploy/installer/dockerd"
	"github.com/kata-deploy/kata-deploy/packaging/guestimage"
)

// DefaultDeps reach the real host: `check` for the preflight, the Docker daemon at dockerHost
// ("" means $DOCKER_HOST or Docker's default socket), guestimage for the image, apt for the kernel.
func DefaultDeps(dockerHost string) Deps {
	return Deps{
		Preflight: func(ctx context.Context) Host {
			facts := check.Gather(ctx, check.Options{DockerHost: dockerHost, DockerTimeout: 10 * time.Second})
			return Host{Report: check.Evaluate(facts), QEMU: facts.QEMU}
		},
		Docker: func(ctx context.Context) (Docker, dockerd.ConfigLocation, error) {
			e, err := dockerapi.Connect(ctx, dockerHost)
			if err != nil {
				return nil, dockerd.ConfigLocation{}, err
			}
			return e, e.Config, nil
		},
		Containerd: func(_ context.Context, address, config string) (Containerd, error) {
			return containerdsvc.Find(address, config)
		},
		BuildImage:  guestimage.Build,
		FetchKernel: guestimage.FetchDebianKernel,
		Executable:  os.Executable,
		Now:         time.Now,
	}
}
