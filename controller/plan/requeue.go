package plan

import "time"

// TrafficPoll is how soon a reconcile looks again while a member is being
// configured or waits for the pool's monitor to see it healthy.
const TrafficPoll = 250 * time.Millisecond

// requeueAfter is how soon the plan may change on its own: when the first
// healthy current server reaches MinReady, a drain ends, a member being
// set up may be serving, or a sick server is due for heal.
func requeueAfter(t Target, servers []Classified, now time.Time) time.Duration {
	var next time.Duration
	soonest := func(wait time.Duration) {
		if wait > 0 && (next == 0 || wait < next) {
			next = wait
		}
	}
	for _, c := range servers {
		if c.Kind == KindDraining {
			soonest(max(c.DrainStart.Add(t.Drain).Sub(now), time.Millisecond))
			continue
		}
		if c.Kind == KindCurrent && c.Ready && c.Traffic == TrafficPending {
			soonest(TrafficPoll)
		}
		if c.Kind == KindCurrent && sick(t, c) && !c.UnhealthySince.IsZero() {
			soonest(c.UnhealthySince.Add(t.HealAfter).Sub(now))
		}
	}
	for _, c := range servers {
		if c.Kind != KindCurrent || c.Available || c.Health != Healthy || c.Status != StatusActive {
			continue
		}
		soonest(c.HealthySince.Add(t.MinReady).Sub(now))
	}
	return next
}
