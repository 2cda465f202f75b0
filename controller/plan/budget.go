package plan

// availabilityBudget is how many serving servers may go this round.
// Capacity counts only the servers seen serving; the budget is what it has
// above Count−MaxUnavailable, and removing one of them costs a unit.
// Removing a server whose serving is not known (its health not seen yet
// after a restart, one booted moments ago from a stale image) takes
// nothing from that capacity, so it is allowed while the capacity holds
// the floor — but never below it, where the real capacity may be all that
// stands. A server known to serve nothing costs nothing. An old server
// stopped for a handover in flight costs its unit until the handover ends.
func availabilityBudget(t Target, g groups, available int) int {
	servingOld := 0
	for _, c := range g.old {
		if c.Available {
			servingOld++
		}
	}
	return servingOld + available - (t.Count - t.MaxUnavailable) - handoverCost(t)
}

// servesNothing says whether a server is known to serve nothing: not
// ACTIVE, or failing its health check. Removing it costs no capacity.
func servesNothing(c Classified) bool {
	return c.Status != StatusActive || c.Health == Unhealthy
}

// cost is what removing c takes from the budget, and whether the budget
// allows it at all.
func cost(c Classified, budget int) (int, bool) {
	switch {
	case servesNothing(c):
		return 0, true
	case c.Available:
		return 1, budget > 0
	}
	return 0, budget >= 0
}

// deleteFirst orders old servers for removal: the ones serving least go
// first (not ACTIVE, then unhealthy, then health unknown, then healthy),
// the oldest first within each.
func deleteFirst(a, b Classified) bool {
	ra, rb := servingRank(a), servingRank(b)
	if ra != rb {
		return ra < rb
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.ID < b.ID
}

func servingRank(c Classified) int {
	switch {
	case c.Status != StatusActive:
		return 0
	case c.Health == Unhealthy:
		return 1
	case c.Health == HealthUnknown:
		return 2
	case !c.Available:
		return 3
	}
	return 4
}

// surplusFirst orders current servers for removal when there are too
// many: not serving before serving, then the newest first (it has done the
// least work and its boot is the likeliest duplicate).
func surplusFirst(a, b Classified) bool {
	ra, rb := servingRank(a), servingRank(b)
	if ra != rb {
		return ra < rb
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.ID > b.ID
}
