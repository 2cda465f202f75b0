package controller_test

import (
	"context"
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

// tagWrites counts the tag PUTs and DELETEs Glance received.
func tagWrites(s *sim.Sim) (puts, deletes int) {
	for _, r := range s.Requests() {
		if r.Service == "image" && strings.Contains(r.Path, "/tags/") {
			switch r.Method {
			case "PUT":
				puts++
			case "DELETE":
				deletes++
			}
		}
	}
	return puts, deletes
}

func imageTags(s *sim.Sim, id string) []string {
	for _, img := range s.Images() {
		if img.ID == id {
			return img.Tags
		}
	}
	return nil
}

// Issue 21: a stage tags the image it has run healthy for promote.after,
// once, counting from its last server's ready-at; a restarted reconciler
// finds it done and tags nothing; a rollback of the promoted image takes
// the tag back. The rounds run on a fake clock, by hand.
func TestStagePromotesOnceAfterItsWait(t *testing.T) {
	const after = time.Minute
	env := simtest.Start(t, grouptest.FastSim(1930), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Tags: []string{"gold"}, Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("staging", 2, "{max_surge: 1, min_ready: 30ms, watch: 0s}")+
		"    promote: {tag: staged-ok, after: 1m}\n")
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold", Tags: []string{"gold"}})

	clock := newFakeClock()
	opts := grouptest.FastOptions()
	opts.Now = clock.Now
	events := &controller.EventLog{}
	newReconciler := func() *controller.GroupReconciler {
		r := controller.NewGroupReconciler(g, env.Cloud.Services(), events, grouptest.Logger(t), opts)
		t.Cleanup(r.Close)
		return r
	}
	r := newReconciler()
	round := func(r *controller.GroupReconciler) plan.Decision {
		t.Helper()
		dec, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return dec
	}
	var dec plan.Decision
	grouptest.WaitUntil(t, 60*time.Second, "the rollout to converge", func() bool {
		clock.Advance(50 * time.Millisecond)
		dec = round(r)
		return dec.Status.Converged
	})
	converged := clock.Now()
	env.Sim.ResetRequests()

	// Within the wait: nothing tagged, and status says how far it is.
	for clock.Now().Sub(converged) < after-10*time.Second {
		clock.Advance(10 * time.Second)
		dec = round(r)
	}
	if puts, _ := tagWrites(env.Sim); puts != 0 {
		t.Fatalf("%d tag writes %s after convergence, before promote.after", puts, clock.Now().Sub(converged))
	}
	if p := dec.Status.Promotion; p == nil || !strings.Contains(p.Waiting, "of 1m") || p.ImageID != patched.ID {
		t.Fatalf("promotion while waiting: %+v", p)
	}

	// Past it: tagged once, recorded, announced.
	for range 5 {
		clock.Advance(10 * time.Second)
		round(r)
	}
	if puts, _ := tagWrites(env.Sim); puts != 1 {
		t.Errorf("%d tag writes, want exactly one", puts)
	}
	if tags := imageTags(env.Sim, patched.ID); !slices.Equal(tags, []string{"gold", "staged-ok"}) {
		t.Errorf("image tags %v, want gold and staged-ok", tags)
	}
	var promoted []controller.Event
	for _, e := range events.Events() {
		if e.Type == controller.EventImagePromoted {
			promoted = append(promoted, e)
		}
	}
	if len(promoted) != 1 || promoted[0].Image != patched.ID || promoted[0].Reason != "staged-ok" || !strings.Contains(promoted[0].Message, "staged-ok") {
		t.Errorf("image-promoted events %+v, want one for %s", promoted, patched.ID)
	}
	for _, s := range env.Sim.Servers() {
		if grouptest.GroupOf(s) == "staging" && (!strings.HasPrefix(s.Metadata[controller.MetaPromoted], patched.ID+" ") || s.Metadata[controller.MetaPromotedTag] != "staged-ok") {
			t.Errorf("server %s records %q %q, want the promotion of %s", s.ID, s.Metadata[controller.MetaPromoted], s.Metadata[controller.MetaPromotedTag], patched.ID)
		}
	}
	if p := round(r).Status.Promotion; p == nil || !p.Done {
		t.Errorf("promotion after the tag: %+v, want done", p)
	}

	// A restart finds it done.
	r2 := newReconciler()
	for range 3 {
		clock.Advance(10 * time.Second)
		round(r2)
	}
	if puts, _ := tagWrites(env.Sim); puts != 1 {
		t.Errorf("%d tag writes after a restart, want still one", puts)
	}

	// Rolled back by hand: the tag comes off the rejected image, once.
	if _, err := controller.Rollback(context.Background(), env.Cloud.Services(), g, ""); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 60*time.Second, "the rollback to converge", func() bool {
		clock.Advance(50 * time.Millisecond)
		return round(r2).Status.Converged
	})
	for range 3 {
		round(r2)
	}
	if tags := imageTags(env.Sim, patched.ID); !slices.Equal(tags, []string{"gold"}) {
		t.Errorf("the rejected image's tags %v, want gold alone", tags)
	}
	if _, deletes := tagWrites(env.Sim); deletes != 1 {
		t.Errorf("%d tag deletes, want one", deletes)
	}
	if p := round(r2).Status.Promotion; p == nil || p.Now || p.Done || !strings.Contains(p.Waiting, "rolling back") {
		t.Errorf("promotion while rolled back: %+v", p)
	}
}

// Glance refusing the tag (its modify_image policy) makes the stage wait
// and say why, once as a notice and every round in its status; nothing
// else changes, and the tag goes on once Glance takes it.
func TestStageWaitsWhileGlanceRefusesTheTag(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1931), 0)
	img := env.Sim.AddImage(sim.Image{Name: "gold", Tags: []string{"gold"}, Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("staging", 2, "{max_surge: 1, min_ready: 30ms, watch: 0s}")+
		"    promote: {tag: staged-ok, after: 0s}\n")
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	servers := grouptest.IDsOf(env.Sim, "staging")
	if err := env.Sim.InjectFault(sim.Fault{Service: "image", Method: "PUT", Path: `/tags/`, Action: sim.FailWith, Status: 403}); err != nil {
		t.Fatal(err)
	}
	events := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), events, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	var dec plan.Decision
	round := func() *plan.Promotion {
		t.Helper()
		var err error
		if dec, err = r.Reconcile(context.Background()); err != nil {
			t.Fatalf("a round failed while Glance refuses the tag: %v", err)
		}
		return dec.Status.Promotion
	}
	// Its health known after the start, the group tries and is refused.
	grouptest.WaitUntil(t, 30*time.Second, "the promotion to wait on Glance's 403", func() bool {
		p := round()
		return p != nil && strings.Contains(p.Waiting, "HTTP 403")
	})
	for range 3 {
		round()
	}
	n := 0
	for _, e := range events.Events() {
		if e.Type == controller.EventPromoteFailed {
			n++
			if !strings.Contains(e.Message, "modify_image") {
				t.Errorf("the notice does not say what the user needs: %s", e.Message)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d promote-failed events in several refused rounds, want one", n)
	}
	if got := grouptest.IDsOf(env.Sim, "staging"); !slices.Equal(got, servers) || !dec.Status.Converged {
		t.Errorf("servers %v (converged %v) while Glance refuses, want %v untouched", got, dec.Status.Converged, servers)
	}
	env.Sim.ClearFaults()
	if _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tags := imageTags(env.Sim, img.ID); !slices.Equal(tags, []string{"gold", "staged-ok"}) {
		t.Errorf("tags %v once Glance takes the tag, want gold and staged-ok", tags)
	}
}
