package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// `phoenix plan` says why a stopped server goes, and a one-shot rebuild
// replaces it.
func TestPreviewAndRebuildReplaceAStoppedServer(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(993), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	victim := grouptest.IDsOf(env.Sim, "web")[0]
	grouptest.StopBehindTheBack(t, env, grouptest.Compute(t, env), victim, "stop")

	_, dec, err := controller.Preview(context.Background(), env.Cloud.Services(), g, grouptest.FastOptions())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range dec.Servers {
		if c.ID == victim {
			found = true
			if c.Kind != plan.KindOld || !strings.Contains(c.Reason, "SHUTOFF, stopped outside Phoenix") {
				t.Errorf("plan shows the stopped server as %s (%q), want it replaced as stopped", c.Kind, c.Reason)
			}
		}
	}
	if !found || dec.Status.Converged {
		t.Errorf("plan: stopped server listed %v, status %+v", found, dec.Status)
	}

	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	if _, there := env.Sim.Server(victim); there || !res.Converged {
		t.Fatalf("after the rebuild: the stopped server is still there (%v), converged %v", there, res.Converged)
	}
	assertFleet(t, env.Sim, g, gold.ID)
}
