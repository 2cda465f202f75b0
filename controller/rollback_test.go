package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// floor samples the group while an image fails after its gate: a server
// serves when it is healthy and recorded as having served; one of that
// image that served and is sick now counts as serving (the image's doing,
// not Phoenix's) while it exists, and after it is gone until the group is
// whole again. It reports the lowest count and the most servers.
type floor struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	min    int
	max    int
	// at describes the servers when the count was lowest.
	at string
}

func describe(list []sim.Server, group string) string {
	var b strings.Builder
	for _, s := range list {
		if grouptest.GroupOf(s) == group {
			fmt.Fprintf(&b, "%s(%s %s healthy=%v deleting=%v ready=%v) ", s.Name, s.ImageID[:8], s.Status, s.Healthy, s.Deleting, s.Metadata[controller.MetaReadyAt] != "")
		}
	}
	return b.String()
}

func watchFloor(env *simtest.Env, group string, count int, leaky string) *floor {
	ctx, cancel := context.WithCancel(context.Background())
	f := &floor{cancel: cancel, done: make(chan struct{}), min: 1 << 30}
	go func() {
		defer close(f.done)
		owed, sickServed := map[string]bool{}, map[string]bool{}
		for ctx.Err() == nil {
			serving, healthy, present := 0, 0, map[string]bool{}
			list := env.Sim.Servers()
			for _, s := range list {
				if grouptest.GroupOf(s) != group {
					continue
				}
				present[s.ID] = true
				served := s.Metadata[controller.MetaReadyAt] != ""
				sick := s.ImageID == leaky && served && !s.Healthy
				switch {
				case s.Healthy && served && !s.Deleting:
					// Serving: healthy and recorded as having served (a
					// new server that never served is no loss).
					healthy++
				case sick && !s.Deleting:
					serving++
					sickServed[s.ID] = true
				case sick:
					owed[s.ID] = true
				}
			}
			for id := range sickServed {
				if !present[id] {
					owed[id] = true
				}
			}
			if healthy >= count {
				clear(owed)
			}
			f.mu.Lock()
			if n := serving + healthy + len(owed); n < f.min {
				f.min = n
				f.at = describe(list, group)
			}
			f.max = max(f.max, len(present))
			f.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	return f
}

func (f *floor) stop() (lowest, most int, at string) {
	f.cancel()
	<-f.done
	return f.min, f.max, f.at
}

// leakyGroup is a group of three whose image passes its gate, and whose
// failures after it are watched.
func leakyGroup(t *testing.T, onFailure string) config.Group {
	return grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 3,
		"{max_surge: 1, max_unavailable: 0, min_ready: 30ms, max_failures: 2, watch: 1m, on_failure: "+onFailure+"}"), "grace: 30s", "grace: 0s", 1))
}

// runUntil reconciles the group until done says so, and fails the test
// when it does not within patience.
func runUntil(t *testing.T, r *controller.GroupReconciler, patience time.Duration, what string, done func(plan.Decision) bool) plan.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var last plan.Decision
	_ = r.Run(ctx, controller.Loop{After: func(d plan.Decision, err error) (time.Duration, bool) {
		last = d
		return 50 * time.Millisecond, err == nil && done(d)
	}})
	if !done(last) {
		t.Fatalf("%s did not happen within %v: status %+v", what, patience, last.Status)
	}
	return last
}

// An image that passes its gate and fails later is rolled back with
// on_failure rollback: the group ends on the image it ran before with
// every server healthy, the image is never chosen again, and a newer one
// rolls out as usual.
func TestRollbackAfterTheGate(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1501), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := leakyGroup(t, config.OnFailureRollback)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	first := grouptest.IDsOf(env.Sim, "web")
	leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: 400 * time.Millisecond})

	log := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), log, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	f := watchFloor(env, "web", 3, leaky.ID)
	runUntil(t, r, 60*time.Second, "the rollback", func(d plan.Decision) bool {
		return d.Status.RollingBack && d.Status.Converged
	})
	lowest, most, at := f.stop()
	assertFleet(t, env.Sim, g, gold.ID)
	if lowest < 3 || most > 4 {
		t.Errorf("serving fell to %d (floor 3) with %s; servers reached %d (ceiling 4)", lowest, at, most)
	}
	var rolled *controller.Event
	for _, e := range log.Events() {
		if e.Type == controller.EventRolledBack {
			rolled = &e
		}
	}
	if rolled == nil || rolled.Image != leaky.ID || !strings.Contains(rolled.Message, "Rolling back to image "+gold.ID) {
		t.Fatalf("no rollout-rolled-back event naming the rejected image and the way back: %+v", rolled)
	}
	if img, why := r.Rejected(); img != leaky.ID || !strings.Contains(why, "failed its health check after serving") {
		t.Errorf("rejected %q (%q), want %s for failing after its gate", img, why, leaky.ID)
	}
	for _, s := range env.Sim.Servers() {
		// A server of the first build the rollout had not reached yet
		// replaced nothing.
		previous := s.Metadata[controller.MetaPreviousImage] == leaky.ID || slices.Contains(first, s.ID)
		if !previous || !strings.HasPrefix(s.Metadata[controller.MetaRejected], leaky.ID+"@") {
			t.Errorf("server %s records previous %q, rejected %q", s.Name, s.Metadata[controller.MetaPreviousImage], s.Metadata[controller.MetaRejected])
		}
	}

	// The rejected image is never chosen again, by this reconciler or a
	// new one (a restart).
	before := grouptest.IDsOf(env.Sim, "web")
	res := grouptest.RunOnce(t, env, g, 10*time.Second)
	if !res.Converged || res.Created != 0 || strings.Join(grouptest.IDsOf(env.Sim, "web"), " ") != strings.Join(before, " ") {
		t.Fatalf("after a restart: converged %v, %d created; want the group left on %s", res.Converged, res.Created, gold.ID)
	}

	// A newer image rolls out as usual.
	fixed := env.Sim.AddImage(sim.Image{Name: "gold"})
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	assertFleet(t, env.Sim, g, fixed.ID)
	for _, s := range env.Sim.Servers() {
		if s.Metadata[controller.MetaPreviousImage] != gold.ID {
			t.Errorf("server %s of the newer image records previous %q, want %s", s.Name, s.Metadata[controller.MetaPreviousImage], gold.ID)
		}
	}
}

// With on_failure halt, an image failing after its gate halts within the
// watch instead of heal replacing its servers round after round.
func TestHaltAfterTheGate(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1502), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := leakyGroup(t, config.OnFailureHalt)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: 400 * time.Millisecond})
	env.Sim.ResetRequests()

	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	d := runUntil(t, r, 60*time.Second, "the halt", func(d plan.Decision) bool { return d.Status.Halted })
	if d.Status.Failures < 2 {
		t.Errorf("halted with %d failures, want the budget of 2 spent", d.Status.Failures)
	}
	err := r.Stuck()
	if err == nil || !strings.Contains(err.Error(), "failed its health check after serving") || !strings.Contains(err.Error(), "publish a fixed image") {
		t.Errorf("stuck: %v; want the failures after the gate and the advice to publish a fixed image", err)
	}
	// Heal churn has ended: a few more rounds create nothing.
	created := grouptest.Creates(env.Sim)
	for range 5 {
		if _, err := r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := grouptest.Creates(env.Sim); n != created || created > 3+2 {
		t.Errorf("%d creates by the halt, %d after: want at most the group and its failure budget, and none after", created, n)
	}
	_ = leaky
}

// A group of one whose image fails after its gate ends in a rollback too,
// not in heal churn: the failure counted on the sick server, which is
// drained and deleted, outlives it on its replacement.
func TestRollbackAfterTheGateGroupOfOne(t *testing.T) {
	for _, onFailure := range []string{config.OnFailureRollback, config.OnFailureHalt} {
		t.Run(onFailure, func(t *testing.T) {
			env := simtest.Start(t, grouptest.FastSim(1504), 0)
			gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 1,
				"{max_surge: 1, max_unavailable: 0, min_ready: 30ms, max_failures: 2, watch: 1m, on_failure: "+onFailure+"}"), "grace: 30s", "grace: 0s", 1))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: 300 * time.Millisecond})
			env.Sim.ResetRequests()

			r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
			defer r.Close()
			d := runUntil(t, r, 30*time.Second, "the end of the rollout", func(d plan.Decision) bool {
				return d.Status.Halted || d.Status.RollingBack && d.Status.Converged
			})
			// The failing image's servers: its first, and one heal
			// replacement; the rollback's one.
			if n := grouptest.Creates(env.Sim); n > 3 {
				t.Errorf("%d creates: heal churned on the failing image", n)
			}
			if onFailure == config.OnFailureHalt {
				if !d.Status.Halted || d.Status.Failures < 2 {
					t.Errorf("status %+v: want halted with the budget of 2 spent", d.Status)
				}
				return
			}
			assertFleet(t, env.Sim, g, gold.ID)
			if img, _ := r.Rejected(); img != leaky.ID {
				t.Errorf("rejected %q, want %s", img, leaky.ID)
			}
		})
	}
}

// A group of one without surge deletes its only server before it creates
// the new one, so no server holds the image it ran at the create: the
// rollback still finds it, from what the reconciler saw before.
func TestRollbackGroupOfOneWithoutSurge(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1506), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 1,
		"{max_surge: 0, max_unavailable: 1, min_ready: 30ms, max_failures: 2, watch: 1m, on_failure: rollback}"), "grace: 30s", "grace: 0s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: 300 * time.Millisecond})

	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	d := runUntil(t, r, 30*time.Second, "the end of the rollout", func(d plan.Decision) bool {
		return d.Status.Halted || d.Status.RollingBack && d.Status.Converged
	})
	if d.Status.Halted {
		t.Fatalf("halted rather than rolled back: %+v", d.Status)
	}
	assertFleet(t, env.Sim, g, gold.ID)
	if img, _ := r.Rejected(); img != leaky.ID {
		t.Errorf("rejected %q, want %s", img, leaky.ID)
	}
}

// With strategy rebuild the servers are reimaged in place, none created:
// each records what it ran before all the same, so that a rollout whose
// every server was rebuilt onto an image failing after its gate still
// has an image to go back to.
func TestRollbackAfterTheGateRebuiltInPlace(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1506), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 3,
		"{strategy: rebuild, max_surge: 0, max_unavailable: 1, min_ready: 30ms, max_failures: 2, watch: 1m, on_failure: rollback}"), "grace: 30s", "grace: 0s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	ids := grouptest.IDsOf(env.Sim, "web")
	// Fails late enough for the rebuild to reach every server first.
	leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute), FailsAfter: 2 * time.Second})

	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	d := runUntil(t, r, 60*time.Second, "the end of the rollout", func(d plan.Decision) bool {
		return d.Status.Halted || d.Status.RollingBack && d.Status.Converged
	})
	if d.Status.Halted {
		t.Fatalf("halted: %v; want a rollback", r.Stuck())
	}
	assertFleet(t, env.Sim, g, gold.ID)
	if img, _ := r.Rejected(); img != leaky.ID {
		t.Errorf("rejected %q, want %s", img, leaky.ID)
	}
	if got := grouptest.IDsOf(env.Sim, "web"); strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("servers %v, want the same %v rebuilt in place", got, ids)
	}
}

// A rollback whose image to go back to is gone from Glance halts, and says
// so.
func TestRollbackToAnImageGoneHalts(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1503), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := leakyGroup(t, config.OnFailureRollback)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	leaky := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	// The old image goes; then the new one shows its fault.
	if err := env.Cloud.Services().Snapshots.DeleteImage(context.Background(), gold.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range grouptest.IDsOf(env.Sim, "web") {
		if err := env.Sim.SetHealth(id, sim.HealthFailing); err != nil {
			t.Fatal(err)
		}
	}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	runUntil(t, r, 60*time.Second, "the halt", func(d plan.Decision) bool { return d.Status.Halted })
	err := r.Stuck()
	if err == nil || !strings.Contains(err.Error(), "cannot roll back from image "+leaky.ID) || !strings.Contains(err.Error(), "gone from Glance") ||
		!strings.Contains(err.Error(), "phoenix rollback --group web --to IMAGE") {
		t.Errorf("stuck: %v; want the rollback refused because the image is gone, and what to do", err)
	}
}
