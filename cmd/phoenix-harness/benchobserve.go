package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/controller/plan"
)

// cloudObserver times servers from the cloud's own notifications: when
// Nova announced each ACTIVE and each delete done, to the microsecond.
// Nova's API gives launch times in whole seconds, and watching deletes
// by listing loads the very API the rollout waits on.
type cloudObserver struct {
	mu       sync.Mutex
	active   map[string]time.Time // server → first notification of it ACTIVE
	deleting map[string]time.Time // server → Phoenix's delete decision, from the metadata carried
	gone     map[string]time.Time // server → its delete.end
}

func newCloudObserver() *cloudObserver {
	return &cloudObserver{active: map[string]time.Time{}, deleting: map[string]time.Time{}, gone: map[string]time.Time{}}
}

func (o *cloudObserver) Notified(_ context.Context, n notifications.Notification) {
	if n.Kind != notifications.KindInstance || n.ServerID == "" || n.At.IsZero() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	earliest := func(m map[string]time.Time) {
		if at, ok := m[n.ServerID]; !ok || n.At.Before(at) {
			m[n.ServerID] = n.At
		}
	}
	switch {
	case n.State == "active" && n.Settled():
		earliest(o.active)
	case strings.HasSuffix(n.EventType, "delete.end"):
		earliest(o.gone)
	}
	if n.Metadata[controller.MetaPhase] == plan.PhaseDeleting {
		if at, err := time.Parse(time.RFC3339Nano, n.Metadata[controller.MetaPhaseAt]); err == nil {
			o.deleting[n.ServerID] = at
		}
	}
}

// activeAt is when Nova announced id ACTIVE.
func (o *cloudObserver) activeAt(id string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	at, ok := o.active[id]
	return at, ok
}

// deletes returns, for every server Phoenix decided to delete since
// since and Nova announced gone, the time from decision to gone.
func (o *cloudObserver) deletes(since time.Time) map[string]time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	took := map[string]time.Duration{}
	for id, decided := range o.deleting {
		if gone, ok := o.gone[id]; ok && !decided.Before(since) {
			took[id] = gone.Sub(decided)
		}
	}
	return took
}

// pending counts the servers decided for deletion since since and not
// yet announced gone.
func (o *cloudObserver) pending(since time.Time) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for id, decided := range o.deleting {
		if _, ok := o.gone[id]; !ok && !decided.Before(since) {
			n++
		}
	}
	return n
}
