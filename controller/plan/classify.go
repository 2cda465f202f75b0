package plan

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"
)

// classify gives one server its part in the rollout. It does not heal:
// whether a sick current server is replaced depends on the whole group
// (heal, below).
func classify(t Target, s Server, now time.Time) Classified {
	c := Classified{Server: s}
	switch {
	case s.Phase == PhaseDeleting || s.TaskState == TaskDeleting:
		c.Kind, c.Reason = KindDeleting, "being deleted"
	case s.Phase == PhaseDraining && s.Status != StatusError:
		c.Kind, c.Reason = KindDraining, cmp.Or(s.Reason, "draining")
	case s.Compromised != "":
		// Out of the traffic already, and not to be trusted: it goes at
		// once, like a failed server, without waiting for its
		// replacement.
		c.Kind, c.Reason = KindFailed, "compromised: "+s.Compromised
	case s.Status == StatusError && !s.Unlisted:
		c.Kind, c.Reason = KindFailed, "failed: server is in ERROR"
		if s.Fault != "" {
			c.Reason += ": " + s.Fault
		}
	default:
		if r := cmp.Or(Drift(t, s), tooOld(t, s, now)); r != "" {
			c.Kind, c.Reason = KindOld, r
		}
		c.Ready = s.Status == StatusActive && s.Health == Healthy && !now.Before(s.HealthySince.Add(t.MinReady))
		c.Available = c.Ready && (!t.Traffic || s.Traffic == TrafficServing) && (!t.Stateful || len(s.StatefulVolumes) > 0)
		// An old server still in BUILD past its deadline (drifted or
		// forced while it booted) is a failed boot too: kept as old, it
		// would hold a surge slot nothing frees. Only BUILD: an old
		// server that is ACTIVE may serve, records or not.
		if (c.Kind == KindCurrent || s.Status == StatusBuild) && missedDeadline(t, c, now) {
			c.Kind = KindFailed
			c.Reason = fmt.Sprintf("failed: not ready %s after its create (status %s, health %s)", t.ProgressDeadline, s.Status, s.Health)
			if s.HealthError != "" {
				c.Reason += ": " + s.HealthError
			}
		}
	}
	return c
}

// missedDeadline says whether a new server that never served is past its
// progress deadline — judged only once this controller has watched it that
// long, so that a daemon back after a long stop looks before it judges.
func missedDeadline(t Target, c Classified, now time.Time) bool {
	return t.ProgressDeadline > 0 && !c.Ready && !c.Served() && !c.Unlisted &&
		now.Sub(c.Created) > t.ProgressDeadline && now.Sub(c.WatchedSince) > t.ProgressDeadline
}

// Drift says why a live server no longer matches the desired state, or ""
// when it does. Drift never looks at health: a drifted server is replaced
// surge-first however healthy it is.
func Drift(t Target, s Server) string {
	switch {
	case s.ImageID != t.ImageID:
		return fmt.Sprintf("image %s is not the desired %s", orNone(s.ImageID), t.ImageID)
	case s.Revision != t.Revision:
		return fmt.Sprintf("spec revision %s is not the desired %s", orNone(s.Revision), t.Revision)
	case s.RebuildMark != "":
		return "rebuild requested: " + s.RebuildMark
	case forced(t.Forces, s) != "":
		return forced(t.Forces, s)
	case !t.RebuildBefore.IsZero() && s.Created.Before(t.RebuildBefore):
		return fmt.Sprintf("created %s, before the rebuild requested at %s (%s)",
			s.Created.UTC().Format(time.RFC3339), t.RebuildBefore.UTC().Format(time.RFC3339), cmp.Or(t.RebuildReason, "forced rebuild"))
	}
	return ""
}

func orNone(s string) string { return cmp.Or(s, "(none)") }

// Designates says whether f asks for s to be replaced.
func (f Force) Designates(s Server) bool {
	if !s.Created.Before(f.Before) {
		return false
	}
	if len(f.Servers) > 0 && !slices.Contains(f.Servers, s.ID) {
		return false
	}
	return f.ImageID == "" || s.ImageID == f.ImageID && s.Revision == f.Revision
}

// forced returns the reason of the first force that designates s.
func forced(forces []Force, s Server) string {
	for _, f := range forces {
		if f.Designates(s) {
			return "rebuild requested: " + f.Reason
		}
	}
	return ""
}

// tooOld says why a server has outlived the group's max_age, or "".
func tooOld(t Target, s Server, now time.Time) string {
	if t.MaxAge <= 0 || s.Created.IsZero() || s.Unlisted {
		return ""
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(s.ID))
	early := time.Duration(float64(t.MaxAge/5) * float64(h.Sum32()) / float64(math.MaxUint32))
	if limit := t.MaxAge - early; now.Sub(s.Created) >= limit {
		return fmt.Sprintf("age: created %s, older than max_age %s (this server's turn comes at %s)",
			s.Created.UTC().Format(time.RFC3339), t.MaxAge, limit.Round(time.Minute))
	}
	return ""
}

// stopped says whether a server was stopped, paused or suspended outside
// Phoenix: not a step Phoenix recorded, nor the old end of a handover.
func stopped(t Target, s Server) bool {
	switch s.Status {
	case StatusShutoff, StatusPaused, StatusSuspended:
		return s.Phase == "" && s.TaskState == "" && !handingFrom(t, s.ID)
	}
	return false
}

// sick says whether a server that should serve does not: ACTIVE and
// failing its check, or stopped behind Phoenix's back (a current one
// only: an old stopped server is removed freely anyway).
func sick(t Target, c Classified) bool {
	switch {
	case c.Phase != "" || c.TaskState != "":
		return false
	case c.Status == StatusActive:
		return c.Health == Unhealthy
	}
	return c.Kind == KindCurrent && stopped(t, c.Server)
}

// heal turns sick current servers into old ones, to be replaced like
// drifted ones — surge-first, within the same budget as a rollout —
// unless two or more, and more than MaxUnhealthy, fail their check at
// once: then the check or the network is the likelier fault, and none
// failing it is replaced. A stopped server is Nova's word, not the
// check's, so it is healed even then, and at once. One sick server is always replaced:
// it is most likely the server (and a group of one would otherwise never
// heal). It returns how many are sick and whether heal is blocked.
func heal(t Target, servers []Classified, now time.Time) (unhealthy int, blocked bool) {
	failing := 0
	for _, c := range servers {
		if sick(t, c) {
			unhealthy++
			if c.Status == StatusActive {
				failing++
			}
		}
	}
	for i, c := range servers {
		// Sick for HealAfter after serving, failing its check (a server
		// stopped behind Phoenix's back is not the image's fault).
		if c.Kind == KindCurrent && c.Served() && c.Status == StatusActive && sick(t, c) && !now.Before(c.UnhealthySince.Add(t.HealAfter)) {
			servers[i].Sick = true
			servers[i].Reason = "unhealthy: failed its health check after serving"
			if c.HealthError != "" {
				servers[i].Reason += ": " + c.HealthError
			}
		}
	}
	if t.MaxUnhealthy < 0 {
		return unhealthy, false
	}
	blocked = failing >= 2 && failing > t.MaxUnhealthy
	for i, c := range servers {
		if c.Kind != KindCurrent || !c.Served() || !sick(t, c) {
			continue
		}
		// HealAfter lets failing checks that begin together be counted
		// together; Nova saying a server stopped needs no such wait.
		if c.Status == StatusActive && (blocked || now.Before(c.UnhealthySince.Add(t.HealAfter))) {
			continue
		}
		servers[i].Kind, servers[i].Healed = KindOld, true
		switch {
		case c.Status != StatusActive:
			servers[i].Reason = fmt.Sprintf("unhealthy: the server is %s, stopped outside Phoenix", c.Status)
		default:
			servers[i].Reason = "unhealthy: failed its health check after serving"
			if c.HealthError != "" {
				servers[i].Reason += ": " + c.HealthError
			}
		}
	}
	return unhealthy, blocked
}
