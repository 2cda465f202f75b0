package plan

import "sort"

// handoverCost is the unavailability that the handovers in flight cost:
// one unit for each old server stopped for them.
func handoverCost(t Target) int {
	from := map[string]bool{}
	for _, h := range t.InFlight {
		from[h.From] = true
	}
	return len(from)
}

// handingFrom says whether a server is the old home of a volume in
// flight.
func handingFrom(t Target, id string) bool {
	for _, h := range t.InFlight {
		if h.From == id {
			return true
		}
	}
	return false
}

// handingTo says whether a server is the new home of a volume in flight.
func handingTo(t Target, id string) bool {
	for _, h := range t.InFlight {
		if h.To == id {
			return true
		}
	}
	return false
}

// handovers pairs old servers that hold data volumes with new ones that
// hold none, within the unavailability budget: each pair stops an old
// server, at the cost removing it would have (cost: one that serves
// nothing — failing its check, not ACTIVE — costs nothing, or a group
// whose old servers all fell sick could never move their volumes off
// them). A new server takes part only once ACTIVE and not known unhealthy
// (whether it truly answers is checked before the old one is stopped);
// every volume of an old server goes to the same new one. A free volume
// goes to a new server at no cost: no server stops.
func handovers(t Target, old, current []Classified, budget *int) []Handover {
	busy := map[string]bool{}
	for _, h := range t.InFlight {
		busy[h.From], busy[h.To], busy[h.Volume] = true, true, true
	}
	var takers []Classified
	for _, c := range current {
		if c.Status == StatusActive && len(c.StatefulVolumes) == 0 && !busy[c.ID] && !c.Unlisted && c.Health != Unhealthy {
			takers = append(takers, c)
		}
	}
	// The oldest new server first: the likeliest to be up.
	sort.SliceStable(takers, func(i, j int) bool { return takers[i].Created.Before(takers[j].Created) })
	var out []Handover
	for _, v := range t.FreeVolumes {
		if len(takers) == 0 {
			return out
		}
		out = append(out, Handover{Volume: v, To: takers[0]})
		takers = takers[1:]
	}
	for _, o := range old {
		if len(takers) == 0 {
			break
		}
		if len(o.StatefulVolumes) == 0 || busy[o.ID] || o.Unlisted {
			continue
		}
		n, ok := cost(o, *budget)
		if !ok {
			continue
		}
		to := takers[0]
		takers = takers[1:]
		*budget -= n
		for _, v := range o.StatefulVolumes {
			if !busy[v] {
				out = append(out, Handover{Volume: v, From: o, To: to})
			}
		}
	}
	return out
}
