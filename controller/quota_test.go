package controller_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
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
