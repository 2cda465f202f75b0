package plan

import "sort"

// addTraffic picks the ready current servers that should serve and do
// not: every one of them for a pool, one for a floating IP (and only when
// no current server holds it or is taking it).
func addTraffic(t Target, current []Classified, drains []Drain, deletes []Delete) []Classified {
	leaving := map[string]bool{}
	for _, dr := range drains {
		leaving[dr.Server.ID] = true
	}
	for _, de := range deletes {
		leaving[de.Server.ID] = true
	}
	var out []Classified
	for _, c := range current {
		if t.SingleTraffic && (c.Traffic == TrafficServing || c.Traffic == TrafficPending) {
			return nil
		}
		if !c.Ready || leaving[c.ID] || c.Unlisted {
			continue
		}
		switch c.Traffic {
		case TrafficNone, TrafficDrained, TrafficBroken:
			out = append(out, c)
		}
	}
	if t.SingleTraffic && len(out) > 1 {
		// The newest ready server: the one that will stay longest.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
		out = out[:1]
	}
	return out
}

// returning lists the old servers to put back into a pool: ready, out
// of it, and not on their way out — an old server started again after a
// handover was rolled back. (An old server leaving is drained, and the
// drain is recorded first, so it is never taken for one.) A floating IP
// is never moved back to an old server.
func returning(t Target, old []Classified) []Classified {
	if t.SingleTraffic {
		return nil
	}
	var out []Classified
	for _, c := range old {
		if c.Ready && c.Phase == "" && !handingFrom(t, c.ID) {
			out = append(out, c)
		}
	}
	return out
}
