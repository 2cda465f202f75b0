package main

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// allPlaced says whether every group of cfg is placed over locations.
func allPlaced(cfg *config.Config) bool {
	for _, g := range cfg.Groups {
		if g.Placement == nil {
			return false
		}
	}
	return len(cfg.Groups) > 0
}

// locations opens the connections of groups placed over several locations,
// one per (cloud, region), shared by the groups that name it, each only
// when first needed and again after a failure: a region down when the
// daemon starts is a location failing, not a reason to exit.
type locations struct {
	topCloud string
	base     openstack.Options
	log      *zap.Logger

	mu    sync.Mutex
	conns map[[2]string]*openstack.Cloud
}

func newLocations(cfg *config.Config, base openstack.Options, log *zap.Logger) *locations {
	return &locations{topCloud: cfg.Cloud, base: base, log: log, conns: map[[2]string]*openstack.Cloud{}}
}

// of is the daemon's Options.Placement.
func (ls *locations) of(g config.Group) ([]controller.Location, time.Duration, bool) {
	p := g.Placement
	if p == nil {
		return nil, 0, false
	}
	var out []controller.Location
	for _, l := range p.Locations {
		cloud := cmp.Or(l.Cloud, ls.topCloud)
		region := l.Region
		zones := l.AvailabilityZones
		if len(zones) == 0 {
			zones = g.AvailabilityZones
		}
		out = append(out, controller.Location{Name: l.Name, Weight: l.Weight, Zones: zones,
			Connect: func(ctx context.Context) (provisioner.Cloud, error) { return ls.connect(ctx, cloud, region) }})
	}
	return out, p.FailoverAfter.D(), true
}

func (ls *locations) connect(ctx context.Context, cloud, region string) (provisioner.Cloud, error) {
	key := [2]string{cloud, region}
	ls.mu.Lock()
	c := ls.conns[key]
	ls.mu.Unlock()
	if c != nil {
		return c.Services(), nil
	}
	opts := ls.base
	opts.Cloud, opts.Region = cloud, region
	c, err := openstack.New(ctx, opts)
	if err != nil {
		return provisioner.Cloud{}, fmt.Errorf("connect to cloud %q region %q: %w", cloud, region, err)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if prev := ls.conns[key]; prev != nil {
		return prev.Services(), nil
	}
	ls.conns[key] = c
	ls.log.Info("connected to a location", zap.String("cloud", cloud), zap.String("region", region))
	return c.Services(), nil
}
