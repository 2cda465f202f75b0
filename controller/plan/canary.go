package plan

import "time"

// gate is what the canary phase allows this round.
type gate struct {
	// maxCurrent bounds the current servers; limit, when set, bounds the
	// budget too (to budget).
	maxCurrent int
	limit      bool
	budget     int
	// baking is set while fewer than Canary new servers have served their
	// bake, and bakeEnd is the soonest end of a bake under way; paused
	// while the rest wait for `phoenix resume`. bakedAt is the latest end
	// of a bake served: progress, for the stall clock.
	baking, paused   bool
	bakeEnd, bakedAt time.Time
}

// canary holds a rollout to a new image or spec to Canary servers until
// they have served CanaryBake — timed from when each was recorded ready,
// so a restart does not start a bake over — and then, with
// PauseAfterCanary, until `phoenix resume` promotes them. A heal, an age
// limit or a forced rebuild of the same image and spec has nothing new to
// try out and goes through no canary.
func canary(t Target, g groups, now time.Time) gate {
	out := gate{maxCurrent: t.Count}
	if t.Canary <= 0 || !newVersion(t, g.old) {
		return out
	}
	baked := 0
	for _, c := range g.current {
		start := c.ReadyAt
		if start.IsZero() {
			start = c.HealthySince
		}
		if !c.Available || start.IsZero() {
			continue
		}
		if end := start.Add(t.CanaryBake); !now.Before(end) {
			baked++
			out.bakedAt = latest(out.bakedAt, end)
		} else if out.bakeEnd.IsZero() || end.Before(out.bakeEnd) {
			out.bakeEnd = end
		}
	}
	switch {
	case baked < t.Canary:
		out.baking = true
		out.maxCurrent = t.Canary
		out.limit, out.budget = true, len(g.old)-(t.Count-t.Canary)
	case t.PauseAfterCanary && !t.Promoted:
		out.paused = true
		out.maxCurrent = len(g.current)
		out.limit, out.budget = true, 0
	}
	return out
}

// newVersion says whether an old server runs another image or revision
// than the target: the rollout tries out something new.
func newVersion(t Target, old []Classified) bool {
	for _, c := range old {
		if c.ImageID != t.ImageID || c.Revision != t.Revision {
			return true
		}
	}
	return false
}
