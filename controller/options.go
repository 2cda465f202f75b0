package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Blocker says why no voluntary replacement may start now ("" when one
// may). One that cannot tell blocks, and says so.
type Blocker interface {
	Blocking(ctx context.Context) string
}

// Options tune one group's reconciler.
type Options struct {
	// RolloutID names this run in events, logs and the metadata of the
	// servers it creates.
	RolloutID string
	// RebuildBefore forces the replacement of servers created before it;
	// RebuildUrgent makes it skip holds, windows and blockers.
	RebuildBefore time.Time
	RebuildReason string
	RebuildUrgent bool
	// Forces are rebuilds asked for from the start (`phoenix rebuild
	// --server`): recorded on the servers they designate, then done.
	// Only, when set, names the only servers the run replaces.
	Forces []plan.Force
	Only   []string
	// Blocker, when set, replaces the group's configured blockers.
	Blocker Blocker
	// PollInterval is the longest wait between reconciles. Default 2s.
	PollInterval time.Duration
	// Parallelism bounds concurrent create and delete requests. Default 8.
	Parallelism int
	// CreateBackoff is the first pause after the cloud refuses a create
	// (quota, or a 4xx); it doubles up to MaxCreateBackoff so a full
	// quota is not hammered, and the first create after it frees follows
	// within MaxCreateBackoff. The group's rollout.create_backoff_max,
	// when set, is its MaxCreateBackoff. Defaults 10s and 1m; the first
	// pause is never longer than the longest.
	CreateBackoff    time.Duration
	MaxCreateBackoff time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ResolveImage resolves the group's image selector; default the
	// cloud's. The daemon passes a cache that its image watch refreshes,
	// so that groups at rest cost Glance nothing.
	ResolveImage func(context.Context, provisioner.ImageSelector) (provisioner.Image, error)
	// Continuous is set by the daemon: once a rollout converges, the next
	// drift starts a new rollout with a new id.
	Continuous bool
	// Wakes, when set, wakes a one-shot rebuild's groups between rounds:
	// the cloud said one of their servers changed.
	Wakes *Wakes
	// Location names the location of a placed group this reconciler
	// keeps (recorded on the servers it creates); Place gives it, each
	// round, its part of the group's budgets (see Placed) and the
	// records its servers should carry of the other locations.
	Location string
	Place    func(servers []provisioner.Server, unlisted int, now time.Time) (plan.LocationTarget, map[string]string)
	// Stages are the stages before the group (the daemon's groups that
	// promote a tag its selector requires): no image for its selector is
	// then a wait for them, not a missing image.
	Stages []Stage
}

func (o *Options) defaults() {
	if o.RolloutID == "" {
		o.RolloutID = uuid.NewString()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	if o.CreateBackoff <= 0 {
		o.CreateBackoff = 10 * time.Second
	}
	if o.MaxCreateBackoff <= 0 {
		o.MaxCreateBackoff = time.Minute
	}
	o.CreateBackoff = min(o.CreateBackoff, o.MaxCreateBackoff)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrStuck wraps the reason a group cannot make progress without a human:
// its image, flavor or network cannot be found, the cloud keeps refusing
// its creates, or its new servers keep going to ERROR.
var ErrStuck = errors.New("cannot proceed")

// ErrHalted wraps the reason a rollout halted: its new servers kept
// failing, or it made no progress within its deadline. It is an ErrStuck.
var ErrHalted = fmt.Errorf("%w: rollout halted", ErrStuck)

// ErrAwaitingStage says no image carries the tag an earlier stage adds
// yet: the group waits for that stage, and nothing is wrong.
var ErrAwaitingStage = errors.New("waiting for an earlier stage")

// ErrRolledBack says a rollout failed and the group went back to the image
// it ran before (rollout.on_failure rollback).
var ErrRolledBack = errors.New("rolled back")

// ErrDeferred says a rollout waits, on purpose, for the operator's
// steering: the group is held, a blocker fires, or it is outside its
// maintenance windows.
var ErrDeferred = errors.New("deferred")

// ErrPaused says a rollout waits, on purpose, for `phoenix resume`
// (rollout.pause_after_canary).
var ErrPaused = errors.New("paused after the canary")

// stuckIfMissing marks a name the cloud does not know (an image, a pool, a
// flavor) or a service it lacks as needing a human.
func stuckIfMissing(err error) error {
	if errors.Is(err, provisioner.ErrNotFound) || errors.Is(err, provisioner.ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrStuck, err)
	}
	return err
}
