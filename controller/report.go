package controller

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Summary is what a run of a group's reconciler did and where it stands.
type Summary struct {
	Group     string
	Status    plan.Status
	LastError error
	// CreateError is the cloud's last refusal of a create (quota, or a
	// 4xx), until a create succeeds again.
	CreateError error
	Pairs       []Pair
	Created     int
	Deleted     int
}

// Summary reports the run so far.
func (r *GroupReconciler) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Summary{
		Group:       r.group.Name,
		Status:      r.lastStatus,
		LastError:   r.lastErr,
		CreateError: r.createErr,
		Pairs:       r.ledger.pairs(),
		Created:     r.createsIssued,
		Deleted:     r.deletesIssued,
	}
}

// report turns the difference between this decision and the last into
// events, and keeps the rollout id and the old→new pairs. It only feeds
// people: nothing here is read back to decide.
func (r *GroupReconciler) report(d plan.Decision, t plan.Target, img provisioner.Image, now time.Time) {
	r.mu.Lock()
	var events []Event
	r.lastImg = img
	if !r.announced && !d.Status.Converged {
		r.announced = true
		id := r.rolloutID
		r.logRollout.Store(&id)
		events = append(events, Event{Type: EventRollout, Image: img.ID,
			Message: fmt.Sprintf("rolling group %s to image %s (%s), revision %s: %d old, %d current of %d",
				r.group.Name, img.Name, img.ID, r.revision, d.Status.Old, d.Status.Current, d.Status.Desired)})
	}
	failed := map[string]bool{}
	current := map[string]bool{}
	for _, c := range d.Servers {
		if c.Kind == plan.KindCurrent {
			current[c.ID] = true
		}
		if c.Kind == plan.KindCurrent && c.Available {
			if first, replaces := r.ledger.becameReady(c.ID, c.Name, c.ImageID, now, r.announced); first && r.announced {
				events = append(events, Event{Type: EventReady, Server: c.ID, Name: c.Name, Image: c.ImageID, Replaces: replaces})
			}
		}
		if c.Kind == plan.KindFailed {
			// One event per failed boot.
			b := c.Boot()
			if !r.failedSeen[b] {
				events = append(events, Event{Type: EventFailed, Server: c.ID, Name: c.Name, Image: c.ImageID, Reason: c.Reason})
			}
			failed[b] = true
		}
	}
	r.ledger.stillCurrent(current)
	r.failedSeen = failed
	if d.Status.HealBlocked && !r.lastStatus.HealBlocked {
		msg := fmt.Sprintf("%d of %d servers of group %s fail their health check at once, more than health.max_unhealthy allows: "+
			"replacing none, since the network or the check itself is the likelier fault; look at them", d.Status.Unhealthy, d.Status.Total, r.group.Name)
		r.log.Error("auto-heal blocked", zap.Int("unhealthy", d.Status.Unhealthy), zap.Int("servers", d.Status.Total))
		events = append(events, Event{Type: EventHealBlocked, Message: msg})
	}
	switch was := r.lastStatus; {
	case d.Status.Deferred > 0 && (was.Deferred == 0 || was.Steering != d.Status.Steering):
		msg := fmt.Sprintf("%d replacements of group %s wait: %s", d.Status.Deferred, r.group.Name, d.Status.Steering)
		r.log.Warn("replacements deferred", zap.Int("deferred", d.Status.Deferred), zap.String("steering", d.Status.Steering))
		events = append(events, Event{Type: EventDeferred, Message: msg, Reason: d.Status.Steering})
	case d.Status.Deferred == 0 && was.Deferred > 0:
		msg := fmt.Sprintf("replacements of group %s may start again", r.group.Name)
		r.log.Info("replacements no longer deferred")
		events = append(events, Event{Type: EventUndeferred, Message: msg})
	}
	changed := d.Status != r.lastStatus
	r.lastStatus = d.Status
	if changed && r.announced {
		st := d.Status
		events = append(events, Event{Type: EventProgress, Status: &st})
		if st.Converged {
			ids := make([]string, len(d.Servers))
			for i, c := range d.Servers {
				ids[i] = c.ID
			}
			r.ledger.converged(ids)
			events = append(events, Event{Type: EventConverged, Image: img.ID, Status: &st})
		}
	}
	for i := range events {
		events[i].Rollout = r.rolloutID
	}
	if d.Status.Converged {
		// The forces this plan saw are done: nothing they designate is
		// left. Ones added since stay. A quota wait is over too: nothing
		// is left to create (the next rollout's creates look again).
		r.forces = r.forces[min(len(t.Forces), len(r.forces)):]
		r.quotaWait, r.quotaSince = "", time.Time{}
		if r.opts.Continuous && r.announced {
			// The next drift is a new rollout, with its own id.
			r.announced = false
			r.logRollout.Store(nil)
			r.rolloutID = uuid.NewString()
			r.ledger = newLedger(now)
		}
	}
	r.mu.Unlock()
	for _, e := range events {
		r.emit(e)
	}
}

func (r *GroupReconciler) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = r.opts.Now()
	}
	if e.Rollout == "" {
		e.Rollout = r.Rollout()
	}
	e.Group = r.group.Name
	r.sink.Emit(e)
}
