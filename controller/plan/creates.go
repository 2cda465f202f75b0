package plan

// creates asks for the missing current servers, pipelined rather than
// batched: as many as are missing (up to maxCurrent, the canary's limit),
// within Count+MaxSurge counting every server that still exists (booting,
// failed, draining and deleting ones included). A server rebuilt in place
// becomes current by itself: none is created for it.
func (d *Decision) creates(t Target, g groups, maxCurrent int) {
	missing := maxCurrent - len(g.current) - g.inPlace
	room := t.Count + t.MaxSurge - d.Status.Total
	for _, zone := range pickZones(t.Zones, g.current, min(missing, room)) {
		d.Creates = append(d.Creates, Create{Zone: zone})
	}
}

// pickZones spreads n new servers across zones, each to the zone that has
// the fewest current servers so far (ties to the first listed).
func pickZones(zones []string, current []Classified, n int) []string {
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
