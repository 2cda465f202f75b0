package controller_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/coordination"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// fencedServers refuses every create while fenced is set, as a replica's
// fence does when etcd cannot confirm it owns the group.
type fencedServers struct {
	provisioner.Servers
	fenced *atomic.Bool
}

func (f fencedServers) CreateServer(ctx context.Context, spec provisioner.ServerSpec) (provisioner.Server, error) {
	if f.fenced.Load() {
		return provisioner.Server{}, fmt.Errorf("create server %s refused: group web, replica r1: etcd did not confirm the group's key: %w", spec.Name, coordination.ErrNotOwner)
	}
	return f.Servers.CreateServer(ctx, spec)
}

// A replica that cannot prove it owns its group for longer than the
// progress deadline (etcd without a leader, say) is absent, as a restarted
// one is: the rollout does not halt as stalled, and goes on once fencing
// lets its steps through. The rounds run on a fake clock, by hand.
func TestFencedStepsDoNotStallTheRollout(t *testing.T) {
	const deadline = time.Minute
	env := simtest.Start(t, grouptest.FastSim(1920), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1, min_ready: 30ms, progress_deadline: 1m}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})

	var fenced atomic.Bool
	fenced.Store(true)
	cloud := env.Cloud.Services()
	cloud.Servers = fencedServers{cloud.Servers, &fenced}
	clock := newFakeClock()
	opts := grouptest.FastOptions()
	opts.Now = clock.Now
	r := controller.NewGroupReconciler(g, cloud, nil, grouptest.Logger(t), opts)
	defer r.Close()
	env.Sim.ResetRequests()
	begin := clock.Now()
	round := func() bool {
		t.Helper()
		dec, err := r.Reconcile(context.Background())
		if err != nil && !errors.Is(err, coordination.ErrNotOwner) {
			t.Fatalf("at +%s: %v", clock.Now().Sub(begin), err)
		}
		if dec.Halt != "" || dec.Status.Halted || r.Stuck() != nil {
			t.Fatalf("at +%s the rollout halted or is stuck: %q, %v", clock.Now().Sub(begin), dec.Halt, r.Stuck())
		}
		return dec.Status.Converged
	}
	for clock.Now().Sub(begin) <= 3*deadline {
		round()
		clock.Advance(5 * time.Second)
	}
	if n := grouptest.Creates(env.Sim); n != 0 {
		t.Fatalf("%d creates reached the cloud while fenced", n)
	}
	fenced.Store(false)
	grouptest.WaitUntil(t, 60*time.Second, "the rollout to converge", func() bool {
		clock.Advance(50 * time.Millisecond)
		return round()
	})
	assertFleet(t, env.Sim, g, patched.ID)
}
