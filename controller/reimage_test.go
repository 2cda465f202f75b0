package controller_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// strategy rebuild: after the rollout the same four servers, with the
// same addresses, run the new image, and never more than max_unavailable
// of them were out of service (the simulator's own view, sampled).
func TestRebuildInPlaceKeepsServersAndAddresses(t *testing.T) {
	env := simtest.Start(t, fastSim(1400), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := parseGroup(t, groupYAML("db", 4, "{strategy: rebuild, max_surge: 0, max_unavailable: 1, min_ready: 30ms}"))
	rebuild(t, env, g, fastOptions())
	before := map[string]string{}
	for _, s := range env.Sim.Servers() {
		before[s.ID] = s.Address
	}
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	mon := env.Sim.Monitor(time.Millisecond, groupOf)
	res := rebuild(t, env, g, fastOptions())
	ext := mon.Stop()["db"]

	after := map[string]string{}
	for _, s := range env.Sim.Servers() {
		after[s.ID] = s.Address
		if s.ImageID != patched.ID || !s.Healthy {
			t.Errorf("server %s runs %s (healthy %v), want the new image %s", s.Name, s.ImageID, s.Healthy, patched.ID)
		}
	}
	if !maps.Equal(before, after) {
		t.Errorf("servers and addresses changed: before %v, after %v", before, after)
	}
	if res.Created != 0 || res.Deleted != 0 {
		t.Errorf("created %d and deleted %d servers, want none: rebuilt in place", res.Created, res.Deleted)
	}
	if ext.MinHealthy < 3 || ext.MaxTotal != 4 {
		t.Errorf("healthy fell to %d (floor 3), total reached %d (want 4)", ext.MinHealthy, ext.MaxTotal)
	}
	if got := slices.Sorted(maps.Keys(after)); len(got) != 4 {
		t.Errorf("%d servers, want 4", len(got))
	}
}
