package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A group that needs a service the cloud lacks is stuck before anything
// is touched, and says which service and why.
func TestMissingServiceStopsTheGroupUpFront(t *testing.T) {
	rollout := "{max_surge: 1, min_ready: 30ms}"
	for _, tc := range []struct {
		name, yaml string
		opts       sim.Options
		partial    bool // only Servers and Images, not the cloud's Services
		want       []string
	}{
		{"pool without Octavia", poolGroupYAML("web", 2, rollout, "{octavia: {pool: web-pool, protocol_port: 8080}}"),
			sim.Options{NoLoadBalancerService: true}, false, []string{"asks for an Octavia pool", "Octavia (load balancer) is not available", "load-balancer endpoint"}},
		{"stateful without Cinder", grouptest.GroupYAML("db", 1, "{max_surge: 1, max_unavailable: 1}") + "    stateful: {volumes: {name: data-*}}\n",
			sim.Options{NoVolumeService: true}, false,
			[]string{"is stateful", "Cinder (block storage) is not available", "volumev3"}},
		{"volume backups without Cinder", grouptest.GroupYAML("web", 2, rollout) + "    backup: {volumes: snapshot}\n", sim.Options{NoVolumeService: true}, false,
			[]string{"asks for backup.volumes snapshot", "Cinder (block storage) is not available"}},
		{"floating IP", poolGroupYAML("web", 1, "{max_surge: 1, max_unavailable: 0, min_ready: 30ms}", "{floating_ip: {pool: public}}"), sim.Options{}, true,
			[]string{"asks for a floating IP", "Neutron (network) is not available"}},
		{"snapshots before delete", grouptest.GroupYAML("web", 2, rollout) + "    backup: {snapshot_before_delete: true}\n", sim.Options{}, true,
			[]string{"asks for snapshots before delete", "Nova (server snapshots) is not available"}},
		{"strategy rebuild", grouptest.GroupYAML("web", 2, "{strategy: rebuild, max_surge: 0, max_unavailable: 1}"), sim.Options{}, true,
			[]string{"asks for rollout.strategy rebuild", "Nova (server actions) is not available"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := grouptest.FastSim(700)
			opts.NoLoadBalancerService, opts.NoVolumeService = tc.opts.NoLoadBalancerService, tc.opts.NoVolumeService
			env := simtest.Start(t, opts, 0)
			env.Sim.AddImage(sim.Image{Name: "gold"})
			env.Sim.ResetRequests()
			cloud := env.Cloud.Services()
			if tc.partial {
				cloud = provisioner.Cloud{Servers: env.Cloud, Images: env.Cloud}
			}
			g := grouptest.ParseGroup(t, tc.yaml)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res := controller.Rebuild(ctx, cloud, []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())[0]
			if !errors.Is(res.Err, controller.ErrStuck) || !errors.Is(res.Err, provisioner.ErrUnavailable) {
				t.Fatalf("result %v, want stuck on an unavailable service", res.Err)
			}
			for _, want := range append(tc.want, "group "+g.Name) {
				if !strings.Contains(res.Err.Error(), want) {
					t.Errorf("error %q does not say %q", res.Err, want)
				}
			}
			for _, r := range env.Sim.Requests() {
				if r.Method != "GET" {
					t.Errorf("the cloud was changed: %s %s", r.Method, r.Path)
				}
			}
		})
	}
}
