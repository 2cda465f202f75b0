package controller

import (
	"context"
	"time"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Loop is how Run paces a reconciler: the one-shot rebuild and the
// daemon's workers differ only in these.
type Loop struct {
	// Until ends the loop between two rounds; a round in flight runs on
	// Run's context to its end. Nil: only the context ends it.
	Until <-chan struct{}
	// Wake asks for a round now (an event, the image watch).
	Wake <-chan struct{}
	// Before runs before each round, and may wait (for a slot among the
	// groups); false ends the loop.
	Before func() bool
	// After sees each round's outcome and says how long to wait at most
	// before the next, or that the loop is done (Run returns the round's
	// error).
	After func(plan.Decision, error) (wait time.Duration, done bool)
}

// Run reconciles until the loop is done, Until closes or ctx ends. Between
// two rounds it waits for the sooner of After's wait, the plan's own
// RequeueAfter (a drain ending, min_ready reached, a bake over), a change
// in a server's health, or a wake.
func (r *GroupReconciler) Run(ctx context.Context, l Loop) error {
	return runLoop(ctx, l, r.Reconcile, r.health.Changes())
}

// runLoop runs rounds of reconcile as Loop l paces them, waking early on
// changes (a server's health).
func runLoop(ctx context.Context, l Loop, reconcile func(context.Context) (plan.Decision, error), changes <-chan struct{}) error {
	for {
		if l.Before != nil && !l.Before() {
			return nil
		}
		d, err := reconcile(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait, done := l.After(d, err)
		if done {
			return err
		}
		if d.RequeueAfter > 0 && d.RequeueAfter < wait {
			wait = d.RequeueAfter
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-l.Until:
			timer.Stop()
			return nil
		case <-l.Wake:
		case <-changes:
		case <-timer.C:
		}
		timer.Stop()
	}
}
