package plan

import (
	"testing"
	"time"
)

func TestCanary(t *testing.T) {
	const bake = 10 * time.Minute
	base := target(4, 2, 0)
	base.Canary, base.CanaryBake = 1, bake
	canaryAt := func(ready time.Duration) []Server {
		s := fleet("oooc")
		s[3].ReadyAt, s[3].HealthySince = t0.Add(-ready), t0.Add(-time.Minute) // a restart: health seen lately
		return s
	}
	cases := []struct {
		name        string
		tweak       func(*Target)
		servers     []Server
		wantCanary  bool
		wantPaused  bool
		wantCreates int
	}{
		{name: "a new image: the canary first", servers: fleet("oooo"), wantCanary: true, wantCreates: 1},
		{name: "baking, six minutes in by its ready record", servers: canaryAt(6 * time.Minute), wantCanary: true},
		{name: "baked by its ready record, though health was seen lately", servers: canaryAt(11 * time.Minute), wantCreates: 2},
		{name: "baked, paused for resume", tweak: func(t *Target) { t.PauseAfterCanary = true }, servers: canaryAt(11 * time.Minute), wantPaused: true},
		{name: "promoted", tweak: func(t *Target) { t.PauseAfterCanary, t.Promoted = true, true }, servers: canaryAt(11 * time.Minute), wantCreates: 2},
		{name: "a heal goes through no canary and no pause", tweak: func(t *Target) { t.PauseAfterCanary = true }, servers: func() []Server {
			s := fleet("cccc")
			s[0].ReadyAt, s[0].Health, s[0].UnhealthySince = t0.Add(-time.Hour), Unhealthy, t0.Add(-time.Hour)
			return s
		}(), wantCreates: 1},
		{name: "an age limit goes through no canary", tweak: func(t *Target) { t.PauseAfterCanary, t.MaxAge = true, 3*time.Hour }, servers: func() []Server {
			s := fleet("cccc")
			s[0].Created = t0.Add(-4 * time.Hour)
			return s
		}(), wantCreates: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := base
			tg.MaxUnhealthy, tg.HealAfter = 2, time.Second
			if tc.tweak != nil {
				tc.tweak(&tg)
			}
			d := Plan(tg, tc.servers, t0)
			if d.Status.Canary != tc.wantCanary || d.Status.Paused != tc.wantPaused || len(d.Creates) != tc.wantCreates {
				t.Errorf("canary %v paused %v creates %d, want %v %v %d", d.Status.Canary, d.Status.Paused, len(d.Creates), tc.wantCanary, tc.wantPaused, tc.wantCreates)
			}
		})
	}
	// The look-again is the end of the bake, from the record.
	if d := Plan(base, canaryAt(6*time.Minute), t0); d.RequeueAfter != 4*time.Minute {
		t.Errorf("requeue after %v, want the rest of the bake, 4m", d.RequeueAfter)
	}
}
