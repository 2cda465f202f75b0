package plan

import (
	"testing"
	"time"
)

func TestRemovals(t *testing.T) {
	pool := target(3, 1, 0)
	pool.Traffic, pool.Drain = true, 30*time.Second
	inPlace := target(3, 0, 1)
	inPlace.RebuildInPlace = true
	stateful := target(3, 1, 1)
	stateful.Stateful = true
	cases := []struct {
		name                                  string
		target                                Target
		servers                               []Server
		budget                                int
		wantDeletes, wantDrains, wantReimages int
	}{
		{name: "no traffic: deleted", target: target(3, 1, 0), servers: fleet("oo"), budget: 1, wantDeletes: 1},
		{name: "behind a pool: drained first", target: pool, servers: func() []Server {
			s := fleet("oo")
			s[0].Traffic, s[1].Traffic = TrafficServing, TrafficServing
			return s
		}(), budget: 1, wantDrains: 1},
		{name: "strategy rebuild: reimaged in place", target: inPlace, servers: fleet("oo"), budget: 1, wantReimages: 1},
		{name: "a recorded rebuild goes first and is resumed", target: inPlace, servers: func() []Server {
			s := fleet("oo")
			s[1].Phase = PhaseRebuilding
			return s
		}(), budget: 0, wantReimages: 0},
		{name: "a server holding data waits for its handover", target: stateful, servers: func() []Server {
			s := fleet("o")
			s[0].StatefulVolumes = []string{"v1"}
			return s
		}(), budget: 1},
		{name: "a server missing from the list is never acted on", target: target(3, 1, 0), servers: func() []Server {
			s := fleet("o")
			s[0].Unlisted = true
			return s
		}(), budget: 1},
		{name: "one that serves nothing goes without budget", target: target(3, 1, 0), servers: fleet("uu"), budget: 0, wantDeletes: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decision
			var g groups
			for _, s := range tc.servers {
				c := classify(tc.target, s, t0)
				c.Kind, c.Reason = KindOld, "image old is not the desired new"
				g.old = append(g.old, c)
			}
			budget := tc.budget
			d.removals(tc.target, g, &budget, t0)
			if len(d.Deletes) != tc.wantDeletes || len(d.Drains) != tc.wantDrains || len(d.Reimages) != tc.wantReimages {
				t.Errorf("deletes %d drains %d reimages %d, want %d %d %d", len(d.Deletes), len(d.Drains), len(d.Reimages), tc.wantDeletes, tc.wantDrains, tc.wantReimages)
			}
		})
	}
}

func TestSurplus(t *testing.T) {
	cases := []struct {
		name   string
		fleet  string
		budget int
		want   string
	}{
		{"a booting duplicate goes first, free", "cccb", 0, "b"},
		{"a serving one only within the budget", "cccc", 0, ""},
		{"the newest serving one when the budget allows", "cccc", 1, "c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decision
			var g groups
			for _, s := range fleet(tc.fleet) {
				g.current = append(g.current, classify(target(3, 1, 0), s, t0))
			}
			budget := tc.budget
			d.surplus(target(3, 1, 0), g, &budget, t0)
			if got := deletedLetters(d); got != tc.want {
				t.Errorf("deleted %q, want %q", got, tc.want)
			}
			if tc.want == "c" && d.Deletes[0].Server.ID != "c03" {
				t.Errorf("deleted %s, want the newest, c03", d.Deletes[0].Server.ID)
			}
		})
	}
}
