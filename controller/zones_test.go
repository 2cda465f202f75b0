package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// zonedGroup is a group of count over the zones, with room for a failure.
func zonedGroup(t *testing.T, count int, zones string) config.Group {
	yaml := strings.Replace(grouptest.GroupYAML("web", count, "{max_surge: 1, max_unavailable: 0, min_ready: 30ms, max_failures: 2}"),
		"    networks: [private]\n", "    networks: [private]\n    availability_zones: "+zones+"\n", 1)
	return grouptest.ParseGroup(t, yaml)
}

// rebuildLogged runs a one-shot rebuild to convergence and returns what it
// logged about zones it avoids.
func rebuildLogged(t *testing.T, env *simtest.Env, g config.Group) (controller.GroupResult, []observer.LoggedEntry) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(grouptest.Logger(t).Core(), core))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, log, grouptest.FastOptions())[0]
	if !res.Converged {
		t.Fatalf("group %s did not converge: %v (status %+v)", g.Name, res.Err, res.Status)
	}
	return res, logs.FilterMessageSnippet("avoiding zone").AllUntimed()
}

// assertZones checks that the group's servers are count, ACTIVE on the
// image, and all outside zone.
func assertZones(t *testing.T, s *sim.Sim, count int, image, zone string) {
	t.Helper()
	var n int
	for _, srv := range s.Servers() {
		if grouptest.GroupOf(srv) != "web" {
			continue
		}
		n++
		if srv.Status != "ACTIVE" || srv.ImageID != image || srv.AvailabilityZone == zone {
			t.Errorf("server %s: %s on %s in %s; want ACTIVE on %s outside %s", srv.Name, srv.Status, srv.ImageID, srv.AvailabilityZone, image, zone)
		}
	}
	if n != count {
		t.Errorf("%d servers, want %d", n, count)
	}
}

// TestZoneWhoseBootsFailIsAvoided: every boot in az1 ends in ERROR. The
// first server sent there fails; its replacement and every create after
// it go to az2 and az3, the group converges without a halt, and its status
// says az1 is avoided.
func TestZoneWhoseBootsFailIsAvoided(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1201), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	env.Sim.FailBootsInZone("az1")
	res, avoiding := rebuildLogged(t, env, zonedGroup(t, 3, "[az1, az2, az3]"))

	if n := env.Sim.BootsFailedInZone("az1"); n != 1 {
		t.Errorf("%d creates went to az1, want only the first", n)
	}
	assertZones(t, env.Sim, 3, gold.ID, "az1")
	if res.Status.Halted || res.Status.Avoiding != "az1" {
		t.Errorf("status %+v: want not halted, avoiding az1", res.Status)
	}
	if len(avoiding) != 1 || avoiding[0].ContextMap()["zone"] != "az1" || avoiding[0].ContextMap()["until"] == nil {
		t.Errorf("logged %+v; want one line saying az1 is avoided, and until when", avoiding)
	}
}

// TestZoneWhoseCreateIsRefusedIsAvoided: Nova refuses the create in az1
// (the first zone listed, where a group of one goes); the next create goes
// to az2.
func TestZoneWhoseCreateIsRefusedIsAvoided(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1202), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	if err := env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.FailWith, Status: 400, Times: 1}); err != nil {
		t.Fatal(err)
	}
	res, avoiding := rebuildLogged(t, env, zonedGroup(t, 1, "[az1, az2]"))

	assertZones(t, env.Sim, 1, gold.ID, "az1")
	if n := grouptest.Creates(env.Sim); n != 2 {
		t.Errorf("%d creates, want the refused one and one more", n)
	}
	if res.Status.Avoiding != "az1" || len(avoiding) != 1 {
		t.Errorf("status %+v, logged %+v: want az1 avoided, said once", res.Status, avoiding)
	}
}
