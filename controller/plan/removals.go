package plan

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// removals takes old servers out within the budget: the ones serving
// least first, a rebuild recorded earlier before anything else (it was
// counted already). A server holding data goes only once a handover moved
// it away and ended: until then a rollback may need it.
func (d *Decision) removals(t Target, g groups, budget *int, now time.Time) {
	sort.SliceStable(g.old, func(i, j int) bool { return deleteFirst(g.old[i], g.old[j]) })
	sort.SliceStable(g.old, func(i, j int) bool {
		return g.old[i].Phase == PhaseRebuilding && g.old[j].Phase != PhaseRebuilding
	})
	for _, c := range g.old {
		n, ok := cost(c, *budget)
		if !ok || c.Unlisted || t.Stateful && (len(c.StatefulVolumes) > 0 || handingFrom(t, c.ID)) {
			continue
		}
		*budget -= n
		if rebuildsInPlace(t, c) {
			d.rebuild(t, c, now)
			continue
		}
		d.remove(t, c, c.Reason, now)
	}
}

// surplus removes current servers beyond Count (a duplicate left by a
// create whose answer was lost, or a smaller Count): the ones not yet
// serving go first and cost nothing; serving ones only within the budget.
func (d *Decision) surplus(t Target, g groups, budget *int, now time.Time) {
	extra := len(g.current) + g.keptServing - t.Count
	if extra <= 0 {
		return
	}
	// A protected server is never surplus.
	candidates := slices.DeleteFunc(slices.Clone(g.current), func(c Classified) bool { return c.Protected != "" })
	sort.SliceStable(candidates, func(i, j int) bool { return surplusFirst(candidates[i], candidates[j]) })
	for _, c := range candidates[:min(extra, len(candidates))] {
		if c.Unlisted {
			continue
		}
		if c.Available {
			if *budget <= 0 {
				continue
			}
			*budget--
		}
		d.remove(t, c, fmt.Sprintf("surplus: the group has %d current servers for a count of %d", len(g.current), t.Count), now)
	}
}

// rebuildsInPlace says whether an old server is reimaged rather than
// replaced: with strategy rebuild, when only its image (or its age, or a
// request to rebuild it) drifted — a new flavor or network needs a new
// server.
func rebuildsInPlace(t Target, c Classified) bool {
	return t.RebuildInPlace && c.Revision == t.Revision && c.Status != StatusError
}

// failedInPlace says whether a failed server is one rebuilt in place, to
// be rebuilt again rather than replaced.
func failedInPlace(t Target, c Classified) bool {
	return t.RebuildInPlace && c.Phase == PhaseRebuilding && c.Revision == t.Revision && c.Compromised == ""
}

// rebuild reimages a server in place: a drain first when it may be
// serving requests that Phoenix routes (a pool; a floating IP stays with
// the server), the rebuild otherwise.
func (d *Decision) rebuild(t Target, c Classified, now time.Time) {
	if c.Phase == PhaseRebuilding {
		d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: c.Reason, Resume: true})
		return
	}
	if t.Traffic && !t.SingleTraffic && c.Status == StatusActive {
		d.Drains = append(d.Drains, Drain{Server: c, Reason: c.Reason, Until: now.Add(t.Drain), Then: DrainThenRebuild})
		return
	}
	d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: c.Reason})
}

// remove takes a server out: a drain first when it may be serving
// requests that Phoenix routes, its delete otherwise.
func (d *Decision) remove(t Target, c Classified, reason string, now time.Time) {
	if t.Traffic && c.Status == StatusActive {
		d.Drains = append(d.Drains, Drain{Server: c, Reason: reason, Until: now.Add(t.Drain)})
		return
	}
	d.Deletes = append(d.Deletes, Delete{Server: c, Reason: reason})
}
