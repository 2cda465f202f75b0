package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// loadConfig loads the file and keeps the groups asked for.
func loadConfig(path string, groups []string, all bool) (*config.Config, []config.Group, error) {
	if path == "" {
		return nil, nil, cli.UsageError(fmt.Errorf("--config is required"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, cli.UsageError(err)
	}
	if all || len(groups) == 0 {
		return cfg, cfg.Groups, nil
	}
	var names []string
	for _, g := range cfg.Groups {
		names = append(names, g.Name)
	}
	var out []config.Group
	for _, want := range groups {
		i := slices.Index(names, want)
		if i < 0 {
			return nil, nil, cli.UsageError(fmt.Errorf("--group %s: %s has no such group (it has: %s)", want, path, strings.Join(names, ", ")))
		}
		out = append(out, cfg.Groups[i])
	}
	return cfg, out, nil
}

// openGroups is what plan, resume and rollback share: the logger, the
// configuration and the groups named (all when none is), and the cloud.
func openGroups(ctx context.Context, g *cli.Globals, path string, names []string) ([]config.Group, provisioner.Cloud, error) {
	log, err := g.Logger()
	if err != nil {
		return nil, provisioner.Cloud{}, err
	}
	cfg, groups, err := loadConfig(path, names, false)
	if err != nil {
		return nil, provisioner.Cloud{}, err
	}
	if err := refusePlaced(groups); err != nil {
		return nil, provisioner.Cloud{}, err
	}
	cloud, err := connect(ctx, cfg.Cloud, log)
	if err != nil {
		return nil, provisioner.Cloud{}, err
	}
	return groups, cloud.Services(), nil
}

// refusePlaced refuses a one-shot command on a group placed over several
// locations: only the daemon reaches every location so far.
func refusePlaced(groups []config.Group) error {
	for _, g := range groups {
		if g.Placement != nil {
			return cli.UsageError(fmt.Errorf("group %s is placed over several locations (placement): only `phoenix daemon` runs such a group so far; one-shot commands reach the top-level cloud alone", g.Name))
		}
	}
	return nil
}

func connect(ctx context.Context, cloud string, log *zap.Logger) (*openstack.Cloud, error) {
	c, err := openstack.New(ctx, openstack.Options{Cloud: cloud, Logger: log, Version: version.Get().Version})
	if err != nil {
		return nil, connectError(err)
	}
	return c, nil
}

// connectError is exit 2 for a connection refused for what the operator
// gave (no such cloud, no clouds.yaml, wrong credentials): nothing was
// done, and trying again would not help. Anything else is exit 1.
func connectError(err error) error {
	err = fmt.Errorf("connect to the cloud: %w", err)
	if openstack.IsConfigError(err) {
		return cli.UsageError(err)
	}
	return cli.NotDone(err)
}
