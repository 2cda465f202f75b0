package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxCounted bounds the failed boots a Progress names at once, so that its
// record fits one metadata value (255 characters); a failure beyond it is
// counted, and its server deleted, in a later round.
const MaxCounted = 10

// failures folds the failed boots of the desired image and revision that
// the record does not count yet into it (a compromised server is not the
// image's fault) — and its servers that served and then fell sick while
// watched (failedLate): an image that passes its gate and cannot stay
// healthy must end in a halt or a rollback, not in heal churn. A boot stays named in Counted while any server of the
// list still is that boot, so that a restart, or a delete that did not
// happen, never counts it twice; the boots gone meanwhile leave with the
// next write (a boot gone never comes back). It returns the record after
// this round, whether it must be written (a failure was counted), and the
// failed boots it counts (only those may be deleted this round: the record
// is written first).
func failures(t Target, servers []Classified, now time.Time) (p Progress, changed bool, counted map[string]bool) {
	p = t.Progress
	was := map[string]bool{}
	for _, b := range p.Counted {
		was[b] = true
	}
	counted = map[string]bool{}
	var keep []string
	for _, c := range servers {
		if b := c.Boot(); was[b] && !counted[b] {
			counted[b] = true
			keep = append(keep, b)
		}
	}
	under := underWay(t, servers)
	for _, c := range servers {
		b := c.Boot()
		if !(c.Kind == KindFailed || failedLate(t, c, under, now)) || c.ImageID != t.ImageID || c.Revision != t.Revision || c.Compromised != "" || counted[b] {
			continue
		}
		if len(keep) >= MaxCounted {
			break
		}
		counted[b] = true
		keep = append(keep, b)
		p.Failures++
		p.LastFailure, p.At = c.Reason, now
		changed = true
	}
	slices.Sort(keep)
	p.Counted = keep
	return p, changed, counted
}

// uncounted says whether a failed server of the desired image and revision
// is not counted yet: it stays until its failure is recorded.
func uncounted(t Target, c Classified, counted map[string]bool) bool {
	return c.Kind == KindFailed && c.ImageID == t.ImageID && c.Revision == t.Revision && c.Compromised == "" && !counted[c.Boot()]
}

// spent says why the failure budget is spent, or "".
func spent(t Target, p Progress) string {
	budget := max(1, t.MaxFailures)
	if p.Failures < budget {
		return ""
	}
	return fmt.Sprintf("%d new servers failed (failure budget %d; last: %s)", p.Failures, budget, p.LastFailure)
}

// stalled says why the rollout made no progress for its deadline, or "".
// Progress is a create that happened (a server listed with its
// created-at), a new server ready, a failure counted, the bake of the
// canaries ending or their promotion, all read from the records — or,
// when later, this controller's first look at the rollout. A failure the
// budget judges, a new server still booting (its own deadline judges it),
// a volume moving to one (or back to a current one, its rollback having
// begun after a rollback of the group; the deadline runs again from the
// end of any handover), a server that served running again and on its
// way to ready (its check not passed yet, or not for min_ready: back from
// a handover rolled back, say — its health grace and thresholds bound
// that), a new server ready whose readiness is not recorded yet, waiting
// on purpose (a bake, a pause, steering), waiting for a full quota and a
// location waiting for the budgets its group's other locations hold are
// not stalls (the deadline runs again from the end of any such wait, and
// from a round after fencing refused a step: the controller was absent);
// nor is a group whose desired servers all serve, with only old ones left
// to go (nothing is left to create or to become ready); and nothing is
// judged before this controller has watched for Settle.
func stalled(t Target, d Decision, p Progress, baked time.Time, now time.Time) string {
	deadline := t.ProgressDeadline
	if deadline <= 0 || d.Status.Converged || d.Status.Failed > 0 || d.Status.Paused || d.Status.Canary || d.Status.Deferred > 0 || t.QuotaWait != "" || t.Sharing != "" {
		return ""
	}
	if d.Status.Available >= t.Count {
		return ""
	}
	if now.Sub(t.WatchedSince) <= t.Settle {
		return ""
	}
	last := latest(t.WatchedSince, p.At, t.PromotedAt, baked, t.QuotaFreed, t.SharingEnded, t.Undeferred, t.HandoverEnded, t.Unfenced)
	for _, c := range d.Servers {
		if c.Kind == KindCurrent && !c.Ready && !c.Served() && !c.Unlisted || handingTo(t, c.ID) || c.Kind == KindCurrent && handingFrom(t, c.ID) {
			return ""
		}
		if c.Kind == KindCurrent && !c.Ready && c.Served() && c.Status == StatusActive && c.Health != Unhealthy {
			return ""
		}
		if c.Kind == KindCurrent && c.Ready && !c.Served() {
			return "" // ready this round, its record not written yet: progress now
		}
		if c.ImageID == t.ImageID && c.Revision == t.Revision {
			last = latest(last, c.Created, c.ReadyAt)
		}
	}
	if now.Sub(last) <= deadline {
		return ""
	}
	return fmt.Sprintf("no new server was created or became ready for %s %s", deadline, stallMark)
}

const stallMark = "(rollout.progress_deadline)"

// IsStall says whether a halt's reason is a stall (nothing failed, nothing
// moved) rather than the failures of an image.
func IsStall(reason string) bool { return strings.Contains(reason, stallMark) }

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}
