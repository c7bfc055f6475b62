package dockerapi

import (
	"context"
	"fmt"
	"sort"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
)

// VolumesOfDriver lists the names of Docker's volumes made by the volume driver called driver
// (`docker volume ls --filter driver=NAME`), sorted. Docker answers from its own record of the
// volumes, so a stopped driver's volumes are still listed.
func (e *Engine) VolumesOfDriver(ctx context.Context, driver string) ([]string, error) {
	resp, err := e.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", driver))})
	if err != nil {
		return nil, fmt.Errorf("listing Docker's volumes of driver %s: %w", driver, err)
	}
	var names []string
	for _, v := range resp.Volumes {
		if v != nil && v.Driver == driver {
			names = append(names, v.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}
