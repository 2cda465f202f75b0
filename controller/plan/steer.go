package plan

import (
	"slices"
	"sort"
	"time"
)

// Steering is the operator's say over when replacements start. A
// voluntary replacement — drift of the image or the spec, age, a rebuild
// asked for without urgency — starts only while the group is not held,
// no blocker fires and now is inside one of its windows; what started
// before finishes. Heal, failed servers, compromised servers and urgent
// rebuilds never wait. A protected server is never replaced or removed,
// whatever drifted, unless it is compromised.

// steering says why no voluntary replacement may start now ("" when one
// may), and, when now is outside every window, when the next one opens.
func steering(t Target, now time.Time) (why string, next time.Time) {
	open, next := Open(t.Windows, now)
	switch {
	case t.Held != "":
		why = "held: " + t.Held
	case t.Blocked != "":
		why = "blocked: " + t.Blocked
	case !open && next.IsZero():
		why = "outside the maintenance windows, which never open"
	case !open:
		why = "outside the maintenance windows; the next opens at " + next.UTC().Format(time.RFC3339)
	}
	if open {
		next = time.Time{}
	}
	return why, next
}

// urgent says whether a rebuild asked of s does not wait for steering: a
// patch sent as urgent, or everything built like a compromised server.
func urgent(t Target, s Server) bool {
	if s.RebuildMark != "" && s.RebuildUrgent {
		return true
	}
	if t.RebuildUrgent && !t.RebuildBefore.IsZero() && s.Created.Before(t.RebuildBefore) {
		return true
	}
	for _, f := range t.Forces {
		if f.Urgent && f.Designates(s) {
			return true
		}
	}
	return false
}

// voluntary says whether an old server's replacement is the operator's to
// schedule: it drifted and serves (a sick one is healed, drifted or not),
// and no urgent rebuild asks for it.
func voluntary(t Target, c Classified, healBlocked bool, now time.Time) bool {
	if c.Kind != KindOld || c.Healed || urgent(t, c.Server) {
		return false
	}
	healing := !healBlocked && t.MaxUnhealthy >= 0 && c.Served() && c.Status == StatusActive && sick(t, c) &&
		!now.Before(c.UnhealthySince.Add(t.HealAfter))
	return !healing
}

// steer keeps the servers steering says to keep: every protected server
// that would be replaced or removed (a compromised one is failed already,
// and goes), and, while voluntary replacements may not start, as many
// drifted servers as the group needs beside its current servers (new
// ones under way included) — the others' replacements started before
// and finish.
func (d *Decision) steer(t Target, now time.Time) {
	why, next := steering(t, now)
	d.Status.Steering, d.Status.NextWindow = why, next
	pinnedServing := 0
	for i, c := range d.Servers {
		if c.Protected == "" || c.Compromised != "" || c.Unlisted {
			continue
		}
		switch {
		case c.Kind == KindOld, c.Kind == KindFailed,
			c.Kind == KindDraining, c.Kind == KindDeleting && c.TaskState != TaskDeleting:
			d.Servers[i].Kind, d.Servers[i].Kept = KindKept, "protected: "+c.Protected
			d.Status.Protected++
			if keptServes(t, d.Servers[i]) {
				pinnedServing++
			}
		}
	}
	if len(t.Only) > 0 {
		// A run that names its servers leaves every other one that serves
		// as it is.
		for i, c := range d.Servers {
			if c.Kind == KindOld && !slices.Contains(t.Only, c.ID) && voluntary(t, c, d.Status.HealBlocked, now) {
				d.Servers[i].Kind, d.Servers[i].Kept = KindKept, "not named: this run replaces only the servers named"
				if keptServes(t, d.Servers[i]) {
					pinnedServing++
				}
			}
		}
	}
	if why == "" {
		return
	}
	// The current servers count whatever they replace: an old server heal
	// or an urgent rebuild replaces goes once its replacement serves.
	current := 0
	var drifted []int
	for i, c := range d.Servers {
		switch {
		case c.Kind == KindCurrent:
			current++
		case voluntary(t, c, d.Status.HealBlocked, now):
			drifted = append(drifted, i)
		}
	}
	keep := max(0, min(len(drifted), t.Count-current-pinnedServing))
	// The ones serving most are kept; the others go as they would have.
	sort.SliceStable(drifted, func(a, b int) bool { return deleteFirst(d.Servers[drifted[a]], d.Servers[drifted[b]]) })
	for _, i := range drifted[len(drifted)-keep:] {
		d.Servers[i].Kind, d.Servers[i].Kept = KindKept, "deferred: "+why
	}
	d.Status.Deferred = keep
}

// keptServes says whether a kept server counts toward the group's
// capacity: running, not failing its check, and — when Phoenix moves the
// traffic — in it.
func keptServes(t Target, c Classified) bool {
	if c.Status != StatusActive || c.Health == Unhealthy || c.Phase != "" {
		return false
	}
	return !t.Traffic || slices.Contains([]TrafficState{TrafficServing, TrafficPending}, c.Traffic)
}
