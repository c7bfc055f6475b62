package dockerapi

import (
	"context"
	"fmt"
	"sort"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// NetworksOfDriver lists the names of Docker's networks made by the network driver called driver
// (`docker network ls --filter driver=NAME`), sorted.
func (e *Engine) NetworksOfDriver(ctx context.Context, driver string) ([]string, error) {
	nets, err := e.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", driver))})
	if err != nil {
		return nil, fmt.Errorf("listing Docker's networks of driver %s: %w", driver, err)
	}
	var names []string
	for _, n := range nets {
		if n.Driver == driver {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}
