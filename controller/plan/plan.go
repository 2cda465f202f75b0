package plan

import (
	"cmp"
	"slices"
	"time"
)

// Plan decides the next steps of one group. It is pure: no I/O, no clock
// but now, so the rollout policy is tested with tables and random
// sequences rather than with a cloud. The phases run in the order the
// package documentation lists.
func Plan(t Target, servers []Server, now time.Time) Decision {
	var d Decision
	d.Status.Desired = t.Count
	d.Status.Handovers = len(t.InFlight)

	// classify
	for _, s := range servers {
		d.Servers = append(d.Servers, classify(t, s, now))
	}
	d.Status.Unhealthy, d.Status.HealBlocked = heal(t, d.Servers, now)

	// steering
	d.steer(t, now)

	// failures
	d.Status.RollingBack = t.RollingBack
	d.Previous = previous(t, d.Servers)
	progress, record, counted := failures(t, d.Servers, now)
	d.Progress, d.RecordProgress = progress, record
	g := d.sort(t, counted, now)

	// halted
	if t.Halted != "" {
		d.halted(t, g, now)
		d.Status.Failures = d.Progress.Failures
		d.Status.Promotion = promotion(t, d, now)
		return d
	}
	for _, c := range g.retry {
		d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: "rebuild again, the last one " + c.Reason})
	}

	budget := availabilityBudget(t, g, d.Status.Available)
	gate := canary(t, g, now)
	d.Status.Canary, d.Status.Paused = gate.baking, gate.paused
	if gate.limit {
		budget = min(budget, gate.budget)
	}
	d.removals(t, g, &budget, now)
	d.surplus(t, g, &budget, now)
	if t.Stateful {
		d.Handovers = handovers(t, g.old, g.current, &budget)
	}
	if t.Traffic {
		d.AddTraffic = addTraffic(t, slices.Concat(g.current, returning(t, g.old), g.kept), d.Drains, d.Deletes)
	}
	d.creates(t, g, min(t.Count-g.keptServing, gate.maxCurrent), now)

	d.Status.Converged = d.Status.Current+len(g.kept) == t.Count && d.Status.Deferred == 0 &&
		d.Status.Available == t.Count && d.Status.Total == t.Count && len(t.InFlight) == 0
	d.RequeueAfter = requeueAfter(t, d.Servers, now)
	if wait := gate.bakeEnd.Sub(now); d.Status.Canary && wait > 0 && (d.RequeueAfter == 0 || wait < d.RequeueAfter) {
		d.RequeueAfter = wait
	}
	if wait := d.Status.NextWindow.Sub(now); d.Status.Deferred > 0 && wait > 0 && (d.RequeueAfter == 0 || wait < d.RequeueAfter) {
		d.RequeueAfter = wait
	}
	d.rollout(watching(t, d.Servers, now))
	d.Status.Failures = d.Progress.Failures
	switch {
	case d.Status.Converged:
	case t.QuotaWait != "":
		d.Status.Waiting = "quota — " + t.QuotaWait
	case t.Sharing != "":
		d.Status.Waiting = "its turn — " + t.Sharing
	}

	// stall: the failure budget spent, no progress for the deadline, or a
	// rollback that cannot be done; a rollback rather than a halt when the
	// group asks for one
	if reason := cmp.Or(t.NoRollback, spent(t, d.Progress), stalled(t, d, d.Progress, gate.bakedAt, now)); reason != "" {
		to, halt := undo(t, d.Servers, reason)
		t.Halted = cmp.Or(halt, reason)
		h := Plan(t, servers, now)
		if halt == "" {
			h.Reject, h.RollbackTo = reason, to
			h.Status.Halted, h.Status.RollingBack = false, true
			return h
		}
		h.Halt = halt
		return h
	}
	d.Status.Promotion = promotion(t, d, now)
	if p := d.Status.Promotion; p != nil && p.Waiting != "" && (!p.Due.IsZero() || p.Again > 0) {
		wait := p.Again
		if !p.Due.IsZero() {
			wait = p.Due.Sub(now)
		}
		if d.RequeueAfter == 0 || wait < d.RequeueAfter {
			d.RequeueAfter = wait
		}
	}
	return d
}

// groups are the servers of a round sorted by the part they play.
type groups struct {
	current, old []Classified
	// retry are servers whose rebuild in place failed: they are rebuilt
	// again rather than replaced.
	retry []Classified
	// inPlace counts the servers that become current by themselves: old
	// ones rebuilt in place, draining ones to be rebuilt once drained,
	// failed rebuilds rebuilt again. None is created for them.
	inPlace int
	// kept are the servers steering keeps as they are, keptServing those
	// of them that count toward capacity: none is created for them.
	kept        []Classified
	keptServing int
}

// sort counts the servers and takes the steps that need no budget: a drain
// that ended, a delete decided earlier, a failed server (once its failure
// is counted).
func (d *Decision) sort(t Target, counted map[string]bool, now time.Time) groups {
	var g groups
	for _, c := range d.Servers {
		d.Status.Total++
		if (c.Kind == KindOld || c.Kind == KindDraining && c.DrainThen == DrainThenRebuild) && rebuildsInPlace(t, c) || c.Kind == KindFailed && failedInPlace(t, c) {
			g.inPlace++
		}
		switch c.Kind {
		case KindDraining:
			d.Status.Draining++
			until := c.DrainStart.Add(t.Drain)
			inTraffic := c.Traffic == TrafficServing || c.Traffic == TrafficPending
			switch {
			case !now.Before(until) && c.DrainThen == DrainThenRebuild && t.RebuildInPlace && c.Revision == t.Revision && inTraffic:
				// Its drain never took (the weight change was refused, or
				// lost in a crash): out of the traffic first, rebuilt next
				// round — a rebuild, unlike a delete, does not take it out.
				d.Drains = append(d.Drains, Drain{Server: c, Reason: c.Reason, Resume: true, Until: until, Then: DrainThenRebuild})
			case !now.Before(until) && c.DrainThen == DrainThenRebuild && t.RebuildInPlace && c.Revision == t.Revision:
				d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: "drained: " + c.Reason})
			case !now.Before(until):
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "drained: " + c.Reason})
			case inTraffic:
				d.Drains = append(d.Drains, Drain{Server: c, Reason: c.Reason, Resume: true, Until: until})
			}
		case KindDeleting:
			d.Status.Deleting++
			if c.Phase == PhaseDeleting && c.TaskState != TaskDeleting {
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "resume the delete decided earlier", Resume: true})
			}
		case KindFailed:
			d.Status.Failed++
			switch {
			case uncounted(t, c, counted):
				// Its failure is recorded first; it goes, or is rebuilt
				// again, in a later round.
			case failedInPlace(t, c):
				// Deleting it would lose what strategy rebuild keeps (its
				// id, addresses, volumes): it is rebuilt again, and counts
				// against the failure budget each time.
				g.retry = append(g.retry, c)
			default:
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: c.Reason})
			}
		case KindOld:
			d.Status.Old++
			g.old = append(g.old, c)
		case KindKept:
			g.kept = append(g.kept, c)
			if keptServes(t, c) {
				g.keptServing++
			}
			if c.Available && c.Phase == "" {
				d.Status.Available++
			}
		case KindCurrent:
			d.Status.Current++
			g.current = append(g.current, c)
			switch {
			case c.Available:
				d.Status.Available++
			case c.Status != StatusActive && !stopped(t, c.Server):
				d.Status.Booting++
			}
		}
	}
	return g
}

// halted keeps what serves, removes the new servers that never did, and
// starts nothing.
func (d *Decision) halted(t Target, g groups, now time.Time) {
	d.Status.Halted = true
	for _, c := range g.current {
		// A server that served and is unhealthy now is not the halt's to
		// remove; nor is one rebuilt in place (it is one of the group's,
		// with the addresses the operator relies on), nor the new home of
		// a volume in flight.
		if !c.Ready && !c.Served() && !c.Unlisted && c.Protected == "" && !(t.RebuildInPlace && c.Phase == PhaseRebuilding) && !handingTo(t, c.ID) {
			d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "rollout halted: " + t.Halted})
		}
	}
	if t.Traffic {
		// What serves stays in the traffic, an old server back from a
		// handover that was rolled back included.
		d.AddTraffic = addTraffic(t, slices.Concat(g.current, returning(t, g.old), g.kept), nil, d.Deletes)
	}
	d.RequeueAfter = requeueAfter(t, d.Servers, now)
}

// rollout clears the rollout's record once the group has converged and
// the watch after it is over: the failure budget is the rollout's, not the
// group's forever.
func (d *Decision) rollout(watching bool) {
	if d.Status.Converged && !watching && !d.Progress.IsZero() {
		d.Progress = Progress{}
		d.RecordProgress = true
	}
}
