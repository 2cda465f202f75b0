package controller_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A daemon's group goes through rollouts one after another; each line its
// reconciler logs during one carries that rollout's id, as its events do.
func TestDaemonLogLinesCarryTheRollout(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1}"))
	core, logs := observer.New(zap.InfoLevel)
	var events controller.EventLog
	opts := grouptest.FastOptions()
	opts.Continuous = true
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), &events, zap.New(core), opts)
	defer r.Close()

	converge := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err := r.Run(ctx, controller.Loop{After: func(d plan.Decision, err error) (time.Duration, bool) {
			return opts.PollInterval, err == nil && d.Status.Converged
		}})
		if err != nil {
			t.Fatalf("the group did not converge: %v", err)
		}
	}
	converge() // the first rollout builds the group
	env.Sim.AddImage(sim.Image{Name: "gold"})
	converge() // the second replaces it

	rollouts := map[string]bool{}
	for _, e := range events.Events() {
		rollouts[e.Rollout] = true
	}
	created := 0
	for _, l := range logs.FilterMessage("created server").All() {
		created++
		id, _ := l.ContextMap()["rollout"].(string)
		if !rollouts[id] {
			t.Errorf("a created-server line carries rollout %q, no rollout's id %v", id, rollouts)
		}
		if l.ContextMap()["group"] != "web" {
			t.Errorf("a created-server line lacks the group: %v", l.ContextMap())
		}
	}
	if created != 4 || len(rollouts) != 2 {
		t.Errorf("%d created-server lines over %d rollouts, want 4 over 2", created, len(rollouts))
	}
	// Between rollouts a line carries none.
	r.Logger().Info("between rollouts")
	if l := logs.FilterMessage("between rollouts").All(); len(l) != 1 || l[0].ContextMap()["rollout"] != nil {
		t.Errorf("a line between rollouts: %v", l)
	}
}
