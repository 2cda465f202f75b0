package controller_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// fakeClock is a reconciler's clock that moves only when the test says:
// the rounds are driven by hand, so no outcome depends on how fast the
// machine runs them.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// The pause between creates the cloud refuses starts at CreateBackoff,
// doubles, and never exceeds the group's rollout.create_backoff_max — not
// even the first one.
func TestCreateBackoffStopsAtCreateBackoffMax(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rollout string
		rounds  int
		want    []int // the seconds at which a create was sent
	}{
		{"the default max, 1m", "{max_surge: 1}", 200, []int{0, 10, 30, 70, 130, 190}},
		{"a max below the first pause", "{max_surge: 1, create_backoff_max: 5s}", 21, []int{0, 5, 10, 15, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := simtest.Start(t, grouptest.FastSim(1900), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, tc.rollout))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			env.Sim.SetQuota(sim.Quota{Instances: 2})
			env.Sim.AddImage(sim.Image{Name: "gold"})

			clock := newFakeClock()
			opts := grouptest.FastOptions()
			opts.CreateBackoff, opts.Now = 10*time.Second, clock.Now
			r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), opts)
			defer r.Close()
			env.Sim.ResetRequests()
			var sent []int
			for s := range tc.rounds {
				before := grouptest.Creates(env.Sim)
				if _, err := r.Reconcile(context.Background()); err != nil {
					t.Fatalf("at %ds: %v", s, err)
				}
				if grouptest.Creates(env.Sim) > before {
					sent = append(sent, s)
				}
				clock.Advance(time.Second)
			}
			if !slices.Equal(sent, tc.want) {
				t.Errorf("creates sent at %v s, want at %v s", sent, tc.want)
			}
		})
	}
}

// Issue 15, item 6: a rollout blocked by a full quota for three times its
// progress deadline does not halt — it waits, touches no old server, says
// so in its status and in one quota-blocked event, and keeps trying at
// least every create_backoff_max; the first create follows within
// create_backoff_max of the quota freeing, the wait ends with a
// quota-freed event, and the rollout converges. The rounds run on a fake
// clock, by hand.
func TestFullQuotaWaitsAndDoesNotHalt(t *testing.T) {
	const deadline, backoffMax = time.Minute, 30 * time.Second
	const nova = "Quota exceeded for instances: Requested 1, but already used 3 of 3 instances"
	env := simtest.Start(t, grouptest.FastSim(1910), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms, progress_deadline: 1m, create_backoff_max: 30s}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := grouptest.IDsOf(env.Sim, "web")
	env.Sim.SetQuota(sim.Quota{Instances: 3})
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})

	clock := newFakeClock()
	opts := grouptest.FastOptions()
	opts.CreateBackoff, opts.Now = 10*time.Second, clock.Now
	events := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), events, grouptest.Logger(t), opts)
	defer r.Close()
	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	env.Sim.ResetRequests()
	count := func(typ string) (n int, last controller.Event) {
		for _, e := range events.Events() {
			if e.Type == typ {
				n, last = n+1, e
			}
		}
		return n, last
	}
	begin := clock.Now()
	// round reconciles once and checks that nothing halted.
	round := func() plan.Decision {
		t.Helper()
		dec, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatalf("at +%s: %v", clock.Now().Sub(begin), err)
		}
		if dec.Halt != "" || dec.Status.Halted || r.Stuck() != nil {
			t.Fatalf("at +%s the rollout halted or is stuck: %q, %v", clock.Now().Sub(begin), dec.Halt, r.Stuck())
		}
		return dec
	}

	// Three progress deadlines and more of refused creates.
	var dec plan.Decision
	for clock.Now().Sub(begin) <= 3*deadline+backoffMax {
		dec = round()
		clock.Advance(5 * time.Second)
	}
	if want := "quota — " + nova; dec.Status.Waiting != want {
		t.Errorf("status waiting %q, want %q", dec.Status.Waiting, want)
	}
	if n, e := count(controller.EventQuotaBlocked); n != 1 || e.Reason != nova || !strings.Contains(e.Message, nova) {
		t.Errorf("%d quota-blocked events, the last %+v; want one with Nova's message", n, e)
	}
	if n, _ := count(controller.EventQuotaFreed); n != 0 {
		t.Errorf("%d quota-freed events while the quota is full", n)
	}
	// Paced, not hammered, not given up: at 0, 10, 30, 60, ... 210s.
	if n := grouptest.Creates(env.Sim); n != 9 {
		t.Errorf("%d creates tried in %s, want 9 (every %s once the pause has grown)", n, clock.Now().Sub(begin), backoffMax)
	}
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, old) {
		t.Errorf("servers %v during the wait, want the old ones %v", got, old)
	}
	for _, s := range env.Sim.Servers() {
		if s.Metadata[controller.MetaHalted] != "" {
			t.Errorf("server %s carries a halt record: %q", s.ID, s.Metadata[controller.MetaHalted])
		}
	}

	// The quota frees right after a refusal, when the pause is longest.
	for before := grouptest.Creates(env.Sim); grouptest.Creates(env.Sim) == before; {
		clock.Advance(time.Second)
		round()
	}
	env.Sim.SetQuota(sim.Quota{Instances: -1})
	freed := grouptest.Creates(env.Sim)
	clock.Advance(backoffMax - time.Second)
	round()
	if n := grouptest.Creates(env.Sim); n != freed {
		t.Fatalf("a create %s after the last refusal, within its pause", backoffMax-time.Second)
	}
	clock.Advance(time.Second)
	round()
	if n := grouptest.Creates(env.Sim); n != freed+1 {
		t.Fatalf("%d creates %s after the quota freed, want the first one", n-freed, backoffMax)
	}
	if dec := round(); dec.Status.Waiting != "" {
		t.Errorf("status still waiting after a create succeeded: %q", dec.Status.Waiting)
	}
	if n, e := count(controller.EventQuotaFreed); n != 1 || e.Message == "" {
		t.Errorf("%d quota-freed events, the last %+v; want one", n, e)
	}

	// The rollout goes on to the end, the clock moving a little each round.
	grouptest.WaitUntil(t, 60*time.Second, "the rollout to converge", func() bool {
		clock.Advance(50 * time.Millisecond)
		return round().Status.Converged
	})
	ext := mon.Stop()["web"]
	if ext.MinHealthy < 3 || ext.MaxTotal > 4 {
		t.Errorf("the group went down to %d healthy or up to %d servers; want at least 3 and at most 4", ext.MinHealthy, ext.MaxTotal)
	}
	assertFleet(t, env.Sim, g, patched.ID)
}

// A wait for quota belongs to the rollout that waits: when the group
// converges without a create (its new image withdrawn), the wait is over,
// and a later rollout refused for quota says so again.
func TestQuotaWaitEndsWithItsRollout(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1920), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	env.Sim.SetQuota(sim.Quota{Instances: 2})
	withdrawn := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})

	clock := newFakeClock()
	opts := grouptest.FastOptions()
	opts.Now = clock.Now
	events := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), events, grouptest.Logger(t), opts)
	defer r.Close()
	round := func(advance time.Duration) plan.Decision {
		t.Helper()
		clock.Advance(advance)
		dec, err := r.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return dec
	}
	blocked := func() int {
		n := 0
		for _, e := range events.Events() {
			if e.Type == controller.EventQuotaBlocked {
				n++
			}
		}
		return n
	}
	round(0)
	if dec := round(time.Minute); dec.Status.Waiting == "" || blocked() != 1 {
		t.Fatalf("status waiting %q, %d quota-blocked events; want a wait, said once", dec.Status.Waiting, blocked())
	}
	if err := env.Sim.SetImageStatus(withdrawn.ID, "deactivated"); err != nil {
		t.Fatal(err)
	}
	// Converged once the old servers' health is known again.
	var dec plan.Decision
	grouptest.WaitUntil(t, 30*time.Second, "the group to converge on its old image", func() bool {
		dec = round(10 * time.Millisecond)
		return dec.Status.Converged
	})
	if dec.Status.Waiting != "" {
		t.Fatalf("converged and still waiting for quota: %q", dec.Status.Waiting)
	}
	env.Sim.AddImage(sim.Image{Name: "gold"})
	round(time.Minute) // past any pause
	if dec := round(time.Minute); dec.Status.Waiting == "" || blocked() != 2 {
		t.Errorf("the next rollout: waiting %q, %d quota-blocked events; want its own wait, said again", dec.Status.Waiting, blocked())
	}
}
