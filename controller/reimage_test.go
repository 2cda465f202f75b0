package controller_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// strategy rebuild: after the rollout the same four servers, with the
// same addresses, run the new image, and never more than max_unavailable
// of them were out of service (the simulator's own view, sampled).
func TestRebuildInPlaceKeepsServersAndAddresses(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1400), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("db", 4, "{strategy: rebuild, max_surge: 0, max_unavailable: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	before := map[string]string{}
	for _, s := range env.Sim.Servers() {
		before[s.ID] = s.Address
	}
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
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

// strategy rebuild onto an image that cannot boot: the server Nova leaves
// in ERROR is rebuilt again (the record going with the rebuild request,
// since Nova refuses metadata on a server in ERROR) until the failure
// budget is spent; then the rollout halts, with the other servers still
// serving the old image and the group above its floor throughout.
func TestRebuildOntoABrokenImageHalts(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1401), 0)
	old := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("db", 4, "{strategy: rebuild, max_surge: 0, max_unavailable: 1, min_ready: 30ms, max_failures: 2}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	broken := env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})
	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	res := grouptest.RunOnce(t, env, g, 30*time.Second)
	ext := mon.Stop()["db"]
	if !errors.Is(res.Err, controller.ErrHalted) {
		t.Fatalf("want a halted rollout, got converged=%v err=%v", res.Converged, res.Err)
	}
	healthyOld, failed := 0, 0
	for _, s := range env.Sim.Servers() {
		switch {
		case s.Healthy && s.ImageID == old.ID:
			healthyOld++
		case s.Status == "ERROR" && s.ImageID == broken.ID:
			failed++
		default:
			t.Errorf("server %s: %s on image %s", s.Name, s.Status, s.ImageID)
		}
	}
	if healthyOld != 3 || failed != 1 {
		t.Errorf("%d serving the old image and %d in ERROR, want 3 and the 1 the budget allowed", healthyOld, failed)
	}
	if ext.MinHealthy < 3 || ext.MaxTotal != 4 {
		t.Errorf("healthy fell to %d (floor 3), total reached %d (want 4)", ext.MinHealthy, ext.MaxTotal)
	}
	rebuilds := 0
	for _, r := range env.Sim.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/action") && r.Status == 202 {
			rebuilds++
		}
	}
	if rebuilds != 2 {
		t.Errorf("%d rebuild requests, want 2: the first and one retry, within max_failures 2", rebuilds)
	}
}

// A security patch (a forced rebuild) that lands while servers are being
// rebuilt in place onto a new image: each server is rebuilt again once —
// its new record says it is a fresh boot, after the patch — and the group
// converges. (The rebuild of a server caught mid-way was once resent
// round after round: its resumed request kept the created-at from before
// the patch, so the patch picked it again each time.)
func TestPatchDuringRebuildInPlaceConverges(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1402), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("db", 3, "{strategy: rebuild, max_surge: 0, max_unavailable: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	ctx := context.Background()
	// Reconcile until the first rebuild has landed: a server on the new
	// image, ACTIVE, not yet serving.
	grouptest.WaitUntil(t, 20*time.Second, "a rebuild to land", func() bool {
		_, _ = r.Reconcile(ctx)
		for _, s := range env.Sim.Servers() {
			if s.ImageID == patched.ID && s.Status == "ACTIVE" && !s.Healthy {
				return true
			}
		}
		return false
	})
	r.Force(plan.Force{Before: time.Now(), Reason: "security patch CVE-test"})
	grouptest.WaitUntil(t, 30*time.Second, "the group to converge after the patch", func() bool {
		d, err := r.Reconcile(ctx)
		return err == nil && d.Status.Converged
	})
	assertFleet(t, env.Sim, g, patched.ID)
	rebuilds := 0
	for _, req := range env.Sim.Requests() {
		if req.Method == "POST" && strings.HasSuffix(req.Path, "/action") && req.Status == 202 {
			rebuilds++
		}
	}
	if rebuilds > 6 {
		t.Errorf("%d rebuild requests for 3 servers, want at most 6: one for the image, one for the patch", rebuilds)
	}
}
