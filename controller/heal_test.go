package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

func TestAutoHealReplacesOneSickServer(t *testing.T) {
	env := simtest.Start(t, fastSim(960), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := parseGroup(t, strings.Replace(groupYAML("web", 10, "{max_surge: 2, max_unavailable: 0, min_ready: 30ms}"), "grace: 30s", "grace: 0s", 1))
	rebuild(t, env, g, fastOptions())
	before := idsOf(env.Sim, "web")
	sick := before[3]
	if err := env.Sim.SetHealth(sick, sim.HealthFailing); err != nil {
		t.Fatal(err)
	}
	mon := env.Sim.Monitor(time.Millisecond, groupOf)
	res := rebuild(t, env, g, fastOptions())
	ext := mon.Stop()["web"]
	if _, ok := env.Sim.Server(sick); ok {
		t.Fatalf("the sick server %s is still there", sick)
	}
	assertFleet(t, env.Sim, g, gold.ID)
	if res.Deleted != 1 || res.Created != 1 {
		t.Errorf("healing created %d and deleted %d servers, want 1 and 1", res.Created, res.Deleted)
	}
	// Surge-first: the 9 healthy ones kept serving, and the replacement
	// came before the sick one went.
	if ext.MinHealthy < 9 || ext.MaxTotal > 12 {
		t.Errorf("healthy fell to %d, total reached %d", ext.MinHealthy, ext.MaxTotal)
	}
}

func TestAutoHealStopsWhenTooManyAreSick(t *testing.T) {
	env := simtest.Start(t, fastSim(961), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := parseGroup(t, strings.Replace(groupYAML("web", 10, "{max_surge: 2, max_unavailable: 0, min_ready: 30ms}"), "grace: 30s", "grace: 0s", 1))
	rebuild(t, env, g, fastOptions())
	before := idsOf(env.Sim, "web")
	for _, id := range before[:6] {
		if err := env.Sim.SetHealth(id, sim.HealthFailing); err != nil {
			t.Fatal(err)
		}
	}
	env.Sim.ResetRequests()
	log := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud, log, logger(t), fastOptions())
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last controller.Decision
	_ = r.Run(ctx, func(d controller.Decision, err error) bool {
		last = d
		return d.Status.Unhealthy == 6
	})
	if !last.Status.HealBlocked {
		t.Fatalf("6 of 10 unhealthy: status %+v, want heal blocked", last.Status)
	}
	// A few more rounds change nothing.
	for range 5 {
		if _, err := r.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if creates(env.Sim) != 0 || !slices.Equal(idsOf(env.Sim, "web"), before) {
		t.Errorf("servers were replaced although 6 of 10 were unhealthy")
	}
	blocked := false
	for _, e := range log.Events() {
		blocked = blocked || e.Type == controller.EventHealBlocked
	}
	if !blocked {
		t.Errorf("no heal-blocked alert among the events")
	}
	_ = config.Group{}
}
