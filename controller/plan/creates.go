package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// creates asks for the missing current servers, pipelined rather than
// batched: as many as are missing (up to maxCurrent, the canary's limit),
// within Count+MaxSurge counting every server that still exists (booting,
// failed, draining and deleting ones included). A server rebuilt in place
// becomes current by itself: none is created for it. New servers keep out
// of the zones where creates fail lately.
func (d *Decision) creates(t Target, g groups, maxCurrent int, now time.Time) {
	avoid, since := avoidedZones(t, d.Servers, now)
	d.Status.Avoiding, d.Status.AvoidingSince = strings.Join(avoid, ","), since
	missing := maxCurrent - len(g.current) - g.inPlace
	room := t.Count + t.MaxSurge - d.Status.Total
	for _, zone := range pickZones(t.Zones, avoid, g.current, min(missing, room)) {
		d.Creates = append(d.Creates, Create{Zone: zone})
	}
}

// avoidedZones returns the listed zones where a create or a boot failed
// within ZoneAvoid (a failed server in ERROR seen now counts as a failure
// now), in the order listed, and the latest of those failures. A zone that
// is out attracts every create otherwise, having the fewest servers. When
// every zone failed lately, the one whose last failure is oldest is not
// avoided: a group never stops trying.
func avoidedZones(t Target, servers []Classified, now time.Time) (avoid []string, since time.Time) {
	if t.ZoneAvoid <= 0 {
		return nil, time.Time{}
	}
	last := map[string]time.Time{}
	for _, z := range t.Zones {
		at := t.ZoneFailures[z]
		for _, c := range servers {
			if c.Zone == z && c.Kind == KindFailed && c.Status == StatusError {
				at = now
			}
		}
		if !at.IsZero() && now.Sub(at) < t.ZoneAvoid && !slices.Contains(avoid, z) {
			avoid = append(avoid, z)
			last[z] = at
		}
	}
	if every := !slices.ContainsFunc(t.Zones, func(z string) bool { return !slices.Contains(avoid, z) }); every && len(avoid) > 0 {
		oldest := slices.MinFunc(avoid, func(a, b string) int { return last[a].Compare(last[b]) })
		avoid = slices.DeleteFunc(avoid, func(z string) bool { return z == oldest })
	}
	for _, z := range avoid {
		since = latest(since, last[z])
	}
	return avoid, since
}

// pickZones spreads n new servers across the zones not avoided, each to
// the zone that has the fewest current servers so far (ties to the first
// listed).
func pickZones(zones, avoid []string, current []Classified, n int) []string {
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	if len(zones) == 0 {
		for range n {
			out = append(out, "")
		}
		return out
	}
	if usable := slices.DeleteFunc(slices.Clone(zones), func(z string) bool { return slices.Contains(avoid, z) }); len(usable) > 0 {
		zones = usable
	}
	load := make(map[string]int, len(zones))
	for _, c := range current {
		load[c.Zone]++
	}
	for range n {
		best := zones[0]
		for _, z := range zones[1:] {
			if load[z] < load[best] {
				best = z
			}
		}
		load[best]++
		out = append(out, best)
	}
	return out
}

// AvoidingText says, for people, which zones new servers avoid and why:
// "avoiding zone az1: creates failed there 2m ago"; "" when none.
func (s Status) AvoidingText(now time.Time) string {
	if s.Avoiding == "" {
		return ""
	}
	what := "zone " + s.Avoiding
	if strings.Contains(s.Avoiding, ",") {
		what = "zones " + strings.ReplaceAll(s.Avoiding, ",", ", ")
	}
	ago := max(now.Sub(s.AvoidingSince), 0)
	when := ago.Round(time.Second).String()
	if ago >= time.Minute {
		when = Span(ago.Round(time.Minute))
	}
	return fmt.Sprintf("avoiding %s: creates failed there %s ago", what, when)
}
