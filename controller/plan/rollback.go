package plan

import (
	"fmt"
	"time"
)

// previous is what the group ran before the desired image and revision:
// what most of the rollout's servers recorded at their create, or, before
// any did, what most of the old servers run (the later-created wins a
// tie); with neither, what the reconciler last saw (Before); on the way
// back from a rejected image, that image. It is recorded on every new
// server, so that a rollback knows where to go after a restart, on
// another replica, and once the old servers are gone.
func previous(t Target, servers []Classified) Ref {
	desired := Ref{t.ImageID, t.Revision}
	votes := map[Ref]int{}
	last := map[Ref]time.Time{}
	vote := func(r Ref, at time.Time) {
		votes[r]++
		if at.After(last[r]) {
			last[r] = at
		}
	}
	for _, c := range servers {
		if (Ref{c.ImageID, c.Revision}) == desired && !c.Previous.IsZero() && c.Previous != desired {
			vote(c.Previous, c.Created)
		}
	}
	if len(votes) == 0 {
		for _, c := range servers {
			r := Ref{c.ImageID, c.Revision}
			switch {
			case r.IsZero() || r == desired || c.Compromised != "" || c.Unlisted:
			case c.Kind == KindOld || c.Kind == KindKept || c.Kind == KindDraining || c.Kind == KindDeleting:
				vote(r, c.Created)
			}
		}
	}
	if len(votes) == 0 && !t.Before.IsZero() && t.Before != desired {
		return t.Before
	}
	if len(votes) == 0 && t.RollingBack {
		// The way back replaces the rejected image's servers, gone already
		// (sick ones go without waiting).
		return t.Rejected
	}
	var best Ref
	for r, n := range votes {
		if best.IsZero() || n > votes[best] || n == votes[best] && last[r].After(last[best]) {
			best = r
		}
	}
	return best
}

// undo turns a failed rollout into a rollback when the group asks for one
// and there is an image to go back to, and returns it; otherwise it
// returns the reason to halt with, saying why there is no rollback. A
// rollback that fails halts: there is no second one.
func undo(t Target, servers []Classified, reason string) (Ref, string) {
	if !t.Rollback || t.NoRollback != "" {
		return Ref{}, reason
	}
	if t.RollingBack {
		return Ref{}, fmt.Sprintf("the rollback from image %s failed too (no second rollback): %s", t.Rejected.ImageID, reason)
	}
	to := previous(t, servers)
	switch {
	case to.IsZero():
		return Ref{}, reason + "; no previous image on record to roll back to"
	case to.ImageID == t.ImageID:
		return Ref{}, reason + "; the servers before ran the same image (a spec change), so there is no image to roll back to"
	}
	return to, ""
}

// Undo is what a rollout that failed outside the plan does (a data
// volume's handover rolled back because the new server failed its check
// with it): go back to the image returned, or, when halt is set, halt
// with it — by the same rules as a failure the plan finds itself.
func Undo(t Target, servers []Classified, reason string) (to Ref, halt string) {
	return undo(t, servers, reason)
}

// failedLate says whether a server of the desired image that served and
// is sick counts against the failure budget: while the rollout is under
// way, and after it within Watch of the server first serving — so the
// rollout's servers are watched for at least Watch after it converged, and
// a heal replacement that cannot stay healthy counts too, while a server
// that served well for longer falls sick alone (it is most likely the
// server) and is healed without counting.
func failedLate(t Target, c Classified, underWay bool, now time.Time) bool {
	return t.Watch > 0 && c.Sick && (underWay || now.Before(c.ReadyAt.Add(t.Watch)))
}

// underWay says whether a rollout to the desired image and revision is
// under way: some server runs another image or revision.
func underWay(t Target, servers []Classified) bool {
	for _, c := range servers {
		if c.Kind != KindFailed && c.Kind != KindDeleting && (c.ImageID != t.ImageID || c.Revision != t.Revision) && !c.Unlisted {
			return true
		}
	}
	return false
}

// watching says whether the rollout's record must outlive convergence:
// its last new server became ready less than Watch ago. One ready now and
// not recorded yet becomes ready now (its record is written this round).
func watching(t Target, servers []Classified, now time.Time) bool {
	if t.Watch <= 0 {
		return false
	}
	var last time.Time
	for _, c := range servers {
		at := c.ReadyAt
		if at.IsZero() && c.Ready {
			at = now
		}
		if c.ImageID == t.ImageID && c.Revision == t.Revision && at.After(last) {
			last = at
		}
	}
	return !last.IsZero() && now.Before(last.Add(t.Watch))
}
