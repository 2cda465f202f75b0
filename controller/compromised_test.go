package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A reconcile that finds a server of its group marked compromised takes it
// out of the traffic before anything else happens to the group. The daemon
// writes the mark before it accepts the event and queues its own
// quarantine for the group's next round; a round already under way, or one
// woken by the cloud's notification of the mark, sees the mark first (seen
// on the development cloud: the replacement was created a second before
// the member left the pool). So does a daemon restarted after the 202.
func TestCompromisedLeavesTrafficFirst(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(910), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"})
	if err != nil {
		t.Fatal(err)
	}
	g := grouptest.ParseGroup(t, poolGroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}", "{octavia: {pool: pool, protocol_port: 8080, drain: 0s}}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
	ids := grouptest.IDsOf(env.Sim, "web")
	victim, _ := env.Sim.Server(ids[0])
	member := grouptest.MemberOf(env.Sim, lb.PoolID, victim.Address)
	if err := env.Cloud.SetServerMetadata(context.Background(), victim.ID, map[string]string{controller.MetaCompromised: "IDS alert 4711"}); err != nil {
		t.Fatal(err)
	}

	env.Sim.ResetRequests()
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	removedAt, firstAction := -1, -1
	for i, r := range env.Sim.Requests() {
		switch {
		case r.Method == "DELETE" && strings.HasSuffix(r.Path, "/members/"+member) && removedAt < 0:
			removedAt = i
		case r.Service == "compute" && r.Method != "GET" && !strings.HasSuffix(r.Path, "/metadata") && firstAction < 0:
			// Records may be written first; nothing else may be done.
			firstAction = i
		case r.Service == "load-balancer" && r.Method != "GET" && removedAt < 0 && firstAction < 0:
			firstAction = i
		}
	}
	if removedAt < 0 {
		t.Fatalf("the compromised server's member %s was never deleted", member)
	}
	if firstAction >= 0 && firstAction < removedAt {
		r := env.Sim.Requests()[firstAction]
		t.Errorf("%s %s (request %d) came before the compromised server's member left the pool (request %d)", r.Method, r.Path, firstAction, removedAt)
	}
	if _, ok := env.Sim.Server(victim.ID); ok {
		t.Errorf("the compromised server %s is still there", victim.ID)
	}
	grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
}

// The daemon's quarantine, queued when the event was accepted, runs after
// a round already took the server out and deleted it: that is done, not
// an error, and it writes nothing on a server on its way out (Nova would
// refuse it: 409).
func TestQuarantineOfAServerAlreadyGone(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(911), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	if _, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"}); err != nil {
		t.Fatal(err)
	}
	g := grouptest.ParseGroup(t, poolGroupYAML("web", 2, "{max_surge: 1, min_ready: 30ms}", "{octavia: {pool: pool, protocol_port: 8080, drain: 0s}}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	victim := grouptest.IDsOf(env.Sim, "web")[0]
	if err := env.Cloud.SetServerMetadata(context.Background(), victim, map[string]string{controller.MetaCompromised: "IDS alert 4711"}); err != nil {
		t.Fatal(err)
	}
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	if _, ok := env.Sim.Server(victim); ok {
		t.Fatalf("the compromised server %s is still there", victim)
	}
	env.Sim.ResetRequests()
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	if err := r.Quarantine(context.Background(), victim, "IDS alert 4711"); err != nil {
		t.Errorf("quarantine of a server already deleted: %v, want nothing to do", err)
	}
	for _, req := range env.Sim.Requests() {
		if req.Method != "GET" {
			t.Errorf("the quarantine of a server already gone sent %s %s", req.Method, req.Path)
		}
	}
}
