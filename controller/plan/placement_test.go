package plan

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPlace(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	loc := func(name string, weight, servers, serving int) LocationView {
		return LocationView{Name: name, Weight: weight, Listed: true, Servers: servers, Serving: serving}
	}
	type want struct {
		state                                  string
		share, count, maxSurge, maxUnavailable int
		frozen                                 bool
		waiting                                bool
	}
	tests := []struct {
		name   string
		p      Placement
		mutate func([]LocationView)
		want   []want
	}{
		{name: "spread by weight from nothing",
			p:    Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 2, 0, 0), loc("b", 1, 0, 0)}},
			want: []want{{state: LocationUp, share: 2, count: 2}, {state: LocationUp, share: 1, count: 1}}},
		{name: "the largest remainder takes the server left, ties to the first",
			p:    Placement{Count: 4, MaxSurge: 0, Locations: []LocationView{loc("a", 1, 0, 0), loc("b", 1, 0, 0), loc("c", 1, 0, 0)}},
			want: []want{{state: LocationUp, share: 2, count: 2}, {state: LocationUp, share: 1, count: 1}, {state: LocationUp, share: 1, count: 1}}},
		{name: "the surge goes to the locations with servers to replace",
			p:      Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 2, 2, 2), loc("b", 1, 1, 1)}},
			mutate: func(l []LocationView) { l[1].Pending = 1 },
			want:   []want{{state: LocationUp, share: 2, count: 2}, {state: LocationUp, share: 1, count: 1, maxSurge: 1}}},
		{name: "a surge of one goes round, never twice to one location",
			p:      Placement{Count: 4, MaxSurge: 2, MaxUnavailable: 1, Locations: []LocationView{loc("a", 1, 2, 2), loc("b", 1, 2, 2)}},
			mutate: func(l []LocationView) { l[0].Pending, l[1].Pending = 2, 2 },
			want: []want{{state: LocationUp, share: 2, count: 2, maxSurge: 1, maxUnavailable: 1},
				{state: LocationUp, share: 2, count: 2, maxSurge: 1}}},
		{name: "the only surge held by one location: the other waits its turn",
			p:      Placement{Count: 6, MaxSurge: 1, Locations: []LocationView{loc("a", 1, 3, 2), loc("b", 2, 4, 4)}},
			mutate: func(l []LocationView) { l[0].Pending, l[1].Pending = 2, 4 },
			want: []want{{state: LocationUp, share: 2, count: 2, maxSurge: 1},
				{state: LocationUp, share: 4, count: 4, waiting: true}}},
		{name: "failing within failover_after keeps its share",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 2, 0), loc("b", 1, 1, 1)}},
			mutate: func(l []LocationView) { l[0].Listed, l[0].APIFailingSince = false, ago(time.Minute) },
			want:   []want{{state: LocationFailing, share: 2, count: 2}, {state: LocationUp, share: 1, count: 1}}},
		{name: "down after failover_after: its share moves, it is frozen",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 2, 0), loc("b", 1, 1, 1)}},
			mutate: func(l []LocationView) { l[0].Listed, l[0].APIFailingSince = false, ago(2*time.Minute) },
			want:   []want{{state: LocationDown, frozen: true}, {state: LocationUp, share: 3, count: 3}}},
		{name: "recorded down and not reached since: down at once after a restart",
			p: Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, -1, 0), loc("b", 1, 2, 2)}},
			mutate: func(l []LocationView) {
				l[0].Listed, l[0].APIFailingSince, l[0].DownRecorded = false, ago(time.Second), ago(time.Hour)
			},
			want: []want{{state: LocationDown, frozen: true}, {state: LocationUp, share: 3, count: 3}}},
		{name: "not reached yet after a restart, nothing known: its share and surge are reserved",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, -1, 0), loc("b", 1, 1, 1)}},
			mutate: func(l []LocationView) { l[0].Listed = false },
			want:   []want{{state: LocationFailing, share: 2, count: 2, maxSurge: 1}, {state: LocationUp, share: 1, count: 1}}},
		{name: "back: the location that took over keeps its servers while the other is short",
			p:    Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 2, 0, 0), loc("b", 1, 3, 3)}},
			want: []want{{state: LocationUp, share: 2, count: 1}, {state: LocationUp, share: 1, count: 3}}},
		{name: "back: one server of its own serves, the other gives one up",
			p:    Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 2, 1, 1), loc("b", 1, 3, 3)}},
			want: []want{{state: LocationUp, share: 2, count: 1}, {state: LocationUp, share: 1, count: 2, maxSurge: 1}}},
		{name: "back: rebalanced",
			p:    Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 2, 2, 2), loc("b", 1, 1, 1)}},
			want: []want{{state: LocationUp, share: 2, count: 2}, {state: LocationUp, share: 1, count: 1}}},
		{name: "back without surge: the unavailability budget lets one go first",
			p:    Placement{Count: 4, MaxSurge: 0, MaxUnavailable: 1, Locations: []LocationView{loc("a", 1, 0, 0), loc("b", 1, 4, 4)}},
			want: []want{{state: LocationUp, share: 2, count: 0}, {state: LocationUp, share: 2, count: 3, maxSurge: 1}}},
		{name: "back without surge: one of its own serves, the other gives up one more",
			p:    Placement{Count: 4, MaxSurge: 0, MaxUnavailable: 1, Locations: []LocationView{loc("a", 1, 1, 1), loc("b", 1, 3, 3)}},
			want: []want{{state: LocationUp, share: 2, count: 1}, {state: LocationUp, share: 2, count: 2, maxSurge: 1}}},
		{name: "recorded down and answering again: up, the record goes",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 0, 0), loc("b", 1, 3, 3)}},
			mutate: func(l []LocationView) { l[0].DownRecorded = ago(time.Hour) },
			want:   []want{{state: LocationUp, share: 2, count: 1}, {state: LocationUp, share: 1, count: 3}}},
		{name: "creates failing past failover_after: down",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 0, 0), loc("b", 1, 1, 1)}},
			mutate: func(l []LocationView) { l[0].CreatesFailingSince = ago(3 * time.Minute) },
			want:   []want{{state: LocationDown, frozen: true}, {state: LocationUp, share: 3, count: 3}}},
		{name: "creates failing for twice failover_after: retrying with its share",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 0, 0), loc("b", 1, 3, 3)}},
			mutate: func(l []LocationView) { l[0].CreatesFailingSince = ago(5 * time.Minute) },
			want:   []want{{state: LocationRetrying, share: 2, count: 2, maxSurge: 1}, {state: LocationUp, share: 3, count: 3}}},
		{name: "retrying with its old servers: it keeps them, the other keeps the whole count",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: 2 * time.Minute, Locations: []LocationView{loc("a", 2, 2, 2), loc("b", 1, 3, 3)}},
			mutate: func(l []LocationView) { l[0].CreatesFailingSince, l[0].Pending = ago(5*time.Minute), 2 },
			want:   []want{{state: LocationRetrying, share: 2, count: 2, maxSurge: 1}, {state: LocationUp, share: 3, count: 3}}},
		{name: "a standby takes nothing while the others are up",
			p:    Placement{Count: 3, MaxSurge: 1, Locations: []LocationView{loc("a", 1, 3, 3), loc("standby", 0, 0, 0)}},
			want: []want{{state: LocationUp, share: 3, count: 3}, {state: LocationUp}}},
		{name: "a standby takes all when the others are down",
			p:      Placement{Count: 3, MaxSurge: 1, FailoverAfter: time.Minute, Locations: []LocationView{loc("a", 1, 3, 3), loc("standby", 0, 0, 0)}},
			mutate: func(l []LocationView) { l[0].Listed, l[0].APIFailingSince = false, ago(time.Hour) },
			want:   []want{{state: LocationDown, frozen: true}, {state: LocationUp, share: 3, count: 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(tc.p.Locations)
			}
			got := Place(tc.p, now)
			for i, w := range tc.want {
				g := got[i]
				have := want{g.State, g.Share, g.Count, g.MaxSurge, g.MaxUnavailable, g.Frozen, g.Waiting != ""}
				if have != w {
					t.Errorf("location %s: got %+v (%s), want %+v", g.Name, have, g.Reason, w)
				}
			}
		})
	}
}

// TestPlaceKeepsBounds draws placements and checks the two promises: over
// the locations not down, no server beyond Count+MaxSurge is allowed, and
// no serving server may go that the floor Count−MaxUnavailable needs.
func TestPlaceKeepsBounds(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 11))
	for range 20000 {
		p := Placement{Count: rng.IntN(8), MaxSurge: rng.IntN(3), FailoverAfter: time.Minute}
		p.MaxUnavailable = rng.IntN(p.Count + 1)
		for i := range 1 + rng.IntN(3) {
			l := LocationView{Name: string(rune('a' + i)), Weight: rng.IntN(3), Listed: rng.IntN(5) > 0}
			l.Servers = rng.IntN(p.Count + 2)
			l.Serving = rng.IntN(l.Servers + 1)
			l.Pending = rng.IntN(l.Servers + 1)
			if !l.Listed && rng.IntN(2) == 0 {
				l.Servers = -1
			}
			if rng.IntN(5) == 0 {
				l.CreatesFailingSince = now.Add(-time.Duration(rng.IntN(300)) * time.Second)
			}
			if rng.IntN(4) == 0 {
				l.APIFailingSince = now.Add(-time.Duration(rng.IntN(120)) * time.Second)
				l.Listed = false
			}
			p.Locations = append(p.Locations, l)
		}
		got := Place(p, now)
		held := false // another location holds a retrying one's share
		for _, g := range got {
			held = held || g.State == LocationUp || g.State == LocationFailing
		}
		used, ceil, serving, removable := 0, 0, 0, 0
		for i, g := range got {
			l := p.Locations[i]
			if g.Frozen || g.State == LocationRetrying && held {
				// Outside the bound; a retrying location tries one server
				// above its share at most.
				if g.State == LocationRetrying && (g.Count != g.Share || g.MaxSurge > 1) {
					t.Fatalf("%+v: retrying location %s may have %d+%d servers for a share of %d", p, g.Name, g.Count, g.MaxSurge, g.Share)
				}
				continue
			}
			u := l.Servers
			if u < 0 {
				u = g.Share + p.MaxSurge
			}
			used += u
			ceil += g.Count + g.MaxSurge
			if l.Listed && g.Count+g.MaxSurge < u {
				t.Fatalf("%+v: location %s may have %d servers, fewer than the %d it has", p, g.Name, g.Count+g.MaxSurge, u)
			}
			if g.Count < 0 || g.MaxSurge < 0 || g.MaxUnavailable < 0 {
				t.Fatalf("%+v: negative budget %+v", p, g)
			}
			if l.Listed {
				serving += l.Serving
				removable += max(0, l.Serving-(g.Count-g.MaxUnavailable))
			}
		}
		if ceil > max(used, p.Count+p.MaxSurge) {
			t.Fatalf("%+v: the locations may have %d servers, above %d and the %d they have: %+v", p, ceil, p.Count+p.MaxSurge, used, got)
		}
		if removable > max(0, serving-(p.Count-p.MaxUnavailable)) {
			t.Fatalf("%+v: %d serving servers may go, the floor allows %d: %+v", p, removable, max(0, serving-(p.Count-p.MaxUnavailable)), got)
		}
	}
}
