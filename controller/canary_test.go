package controller_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

func onImage(s *sim.Sim, image string) int {
	n := 0
	for _, srv := range s.Servers() {
		if srv.ImageID == image {
			n++
		}
	}
	return n
}

func TestCanaryPausesUntilResume(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(970), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 6, "{max_surge: 2, min_ready: 30ms, canary: 2, canary_bake: 200ms, pause_after_canary: true}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})

	res := grouptest.RunOnce(t, env, g, 30*time.Second)
	if !errors.Is(res.Err, controller.ErrPaused) {
		t.Fatalf("want the rollout paused after the canary, got converged=%v err=%v", res.Converged, res.Err)
	}
	if n := onImage(env.Sim, patched.ID); n != 2 || len(env.Sim.Servers()) != 6 {
		t.Fatalf("%d servers on the new image (of %d), want exactly the 2 canaries", n, len(env.Sim.Servers()))
	}
	// Still paused on the next run.
	if res = grouptest.RunOnce(t, env, g, 10*time.Second); !errors.Is(res.Err, controller.ErrPaused) || onImage(env.Sim, patched.ID) != 2 {
		t.Fatalf("second run: %v, %d new", res.Err, onImage(env.Sim, patched.ID))
	}
	r, err := controller.Resume(context.Background(), env.Cloud.Services(), g)
	if err != nil || r.Promoted == 0 {
		t.Fatalf("resume: %+v %v", r, err)
	}
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	assertFleet(t, env.Sim, g, patched.ID)
}

func TestCanaryBakesThenGoesOn(t *testing.T) {
	const bake = 500 * time.Millisecond
	env := simtest.Start(t, grouptest.FastSim(971), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 6, "{max_surge: 2, min_ready: 30ms, canary: 2, canary_bake: 500ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	log := &controller.EventLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, log, grouptest.Logger(t), grouptest.FastOptions())[0]
	if !res.Converged {
		t.Fatalf("did not converge: %v", res.Err)
	}
	assertFleet(t, env.Sim, g, patched.ID)
	var creates, ready []time.Time
	for _, e := range log.Events() {
		switch e.Type {
		case controller.EventCreate:
			creates = append(creates, e.Time)
		case controller.EventReady:
			ready = append(ready, e.Time)
		}
	}
	if len(creates) != 6 || len(ready) < 2 {
		t.Fatalf("%d creates, %d ready events", len(creates), len(ready))
	}
	// The third server is created only once both canaries have been
	// healthy for the bake. The bake counts from when the check first
	// passed; the ready event comes min_ready (30ms) and up to a poll
	// (50ms) or two later, hence the slack. Without a bake the gap is a
	// poll at most.
	if gap := creates[2].Sub(ready[1]); gap < bake-150*time.Millisecond {
		t.Errorf("the third create came %v after the second canary was ready, before the %v bake", gap, bake)
	}
}
