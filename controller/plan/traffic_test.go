package plan

import (
	"testing"
	"time"
)

// With traffic, a ready server counts only once it serves, an old server
// is drained rather than deleted, and a floating IP goes to one server.
func TestPlanTraffic(t *testing.T) {
	withTraffic := func(spec string, states ...TrafficState) []Server {
		out := fleet(spec)
		for i := range out {
			out[i].Traffic = states[i]
		}
		return out
	}
	pool := target(2, 1, 0)
	pool.Traffic, pool.Drain = true, 5*time.Second
	fip := target(1, 1, 0)
	fip.Traffic, fip.SingleTraffic, fip.Drain = true, true, 5*time.Second

	t.Run("ready but not yet a member: added, nothing drained", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c02" || len(d.Drains)+len(d.Deletes) != 0 {
			t.Errorf("add %v drains %v deletes %v", d.AddTraffic, d.Drains, d.Deletes)
		}
	})
	t.Run("member pending: nothing to do but look again soon", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficPending), t0)
		if len(d.AddTraffic)+len(d.Drains)+len(d.Deletes) != 0 || d.RequeueAfter != TrafficPoll {
			t.Errorf("add %v drains %v deletes %v requeue %v", d.AddTraffic, d.Drains, d.Deletes, d.RequeueAfter)
		}
	})
	t.Run("serving: one old server drained, not deleted", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficServing), t0)
		if len(d.Drains) != 1 || len(d.Deletes) != 0 || !d.Drains[0].Until.Equal(t0.Add(5*time.Second)) {
			t.Errorf("drains %+v deletes %v", d.Drains, d.Deletes)
		}
	})
	t.Run("member in ERROR or at weight 0 is put back", func(t *testing.T) {
		d := Plan(pool, withTraffic("cc", TrafficBroken, TrafficDrained), t0)
		if len(d.AddTraffic) != 2 {
			t.Errorf("add %v", d.AddTraffic)
		}
	})
	t.Run("old server in ERROR is deleted without a drain", func(t *testing.T) {
		d := Plan(pool, withTraffic("cce", TrafficServing, TrafficServing, TrafficServing), t0)
		if deletedLetters(d) != "e" || len(d.Drains) != 0 {
			t.Errorf("deletes %q drains %v", deletedLetters(d), d.Drains)
		}
	})
	t.Run("floating ip moves to the new server, then the old drains", func(t *testing.T) {
		d := Plan(fip, withTraffic("oc", TrafficServing, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c01" || len(d.Drains) != 0 {
			t.Errorf("add %v drains %v", d.AddTraffic, d.Drains)
		}
		d = Plan(fip, withTraffic("oc", TrafficNone, TrafficServing), t0)
		if len(d.AddTraffic) != 0 || len(d.Drains) != 1 || d.Drains[0].Server.ID != "o00" {
			t.Errorf("add %v drains %v", d.AddTraffic, d.Drains)
		}
	})
	t.Run("floating ip goes to one server of several, the one that stays", func(t *testing.T) {
		d := Plan(fip, withTraffic("cc", TrafficNone, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c00" || len(d.Drains) != 1 || d.Drains[0].Server.ID != "c01" {
			t.Errorf("add %v drains %v: want the surplus c01 drained and the address on c00", d.AddTraffic, d.Drains)
		}
	})
}
