package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/blocker"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/coordination"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// GroupReconciler keeps one group converging on its spec. It is
// level-triggered: every Reconcile observes the servers, the image and
// what is recorded on them, lets plan decide, acts, and reports.
//
// What it keeps in memory paces or steers it (the create backoff, resolved
// names, zones that failed lately), feeds reports (events, the old→new pairs, the rollout id), or only ever
// postpones a decision (when it first saw a server, a stopped server or a
// handover step; servers it created that a list missed); and it stands in
// for a record no server could take (a halt or a failure count while the
// group has no server that accepts metadata). The README's design section
// lists each and why losing it is safe.
type GroupReconciler struct {
	group config.Group
	// revision is Revision(group), fixed for the reconciler's life.
	revision string
	cloud    provisioner.Cloud
	health   *healthcheck.Checker
	// traffic moves requests between the servers; nil when the group has
	// none. refused says why the cloud cannot do what the group asks.
	traffic traffic
	refused error
	// blocker says why no voluntary replacement may start; nil when the
	// group has none.
	blocker Blocker
	sink    EventSink
	log     *zap.Logger
	opts    Options

	mu sync.Mutex
	// Pacing: creates wait until blockedUntil after a refusal.
	blockedUntil time.Time
	backoff      time.Duration
	refusals     int
	createErr    error
	// A quota wait: the cloud's refusal of the last create for a full
	// quota, until a create succeeds, and since when; when the last such
	// wait ended. plan reads the wait as a wait, not a stall.
	quotaWait  string
	quotaSince time.Time
	quotaFreed time.Time
	// deferred: the last round kept replacements back for steering;
	// undeferred is the first round after such a round. The stall
	// deadline runs from it, not from before the wait.
	deferred   bool
	undeferred time.Time
	// sharing: the last round of a location found the group's budgets
	// held by its other locations; sharingEnded is the first round after.
	sharing      bool
	sharingEnded time.Time
	// fenced: a cloud step was refused since the last round that looked
	// (this replica could not prove it owns the group); unfenced is the
	// first round after. The stall deadline runs again from it.
	fenced   bool
	unfenced time.Time
	// staged is the last image this reconciler tagged, a stage, until the
	// record on the servers says so; promoteFailed why the last tag failed.
	staged        plan.PromotedImage
	promoteFailed string
	// handoverEnded is when a data volume's handover last ended, moved
	// or rolled back; the stall deadline runs again from it.
	handoverEnded time.Time
	// zoneFailures is when a create or a boot last failed in each zone.
	// It only steers placement, like the create backoff: a restart loses nothing unsafe.
	zoneFailures map[string]time.Time
	// names is the flavor, networks and server group resolved for the
	// last creates, kept for namesTTL: a rollout costs the cloud one
	// lookup each, not one per round that creates. A failed create drops
	// it (the name may point elsewhere now).
	names   resolvedNames
	namesAt time.Time
	// Reports.
	lastErr       error
	lastStatus    plan.Status
	lastImg       provisioner.Image
	announced     bool
	failedSeen    map[string]bool
	ledger        *ledger
	deletesIssued int
	createsIssued int
	seen          []Seen
	freshness     Freshness
	// rolloutID names the rollout in progress (Options.RolloutID at
	// first); forces are rebuilds asked for by events, kept until the
	// group converges past them.
	rolloutID string
	forces    []plan.Force
	// logRollout is the rollout id the log's lines carry: set while a
	// daemon's rollout is under way (a one-shot run's log carries its id
	// from the start).
	logRollout *atomic.Pointer[string]
	// Stand-ins for records no server could take: the last halt seen or
	// made, and the rollout's progress record.
	halted   haltState
	progress keyedProgress
	// rejected is the last rollback seen or made (recorded: seen on a
	// server, so that its absence later means `phoenix resume` lifted
	// it); rollingBack is set while the group goes back from it.
	rejected         rejection
	rejectedRecorded bool
	// rejectedOn are the servers last seen carrying it: only one of them
	// listed without it says it was lifted (a server gone says nothing).
	rejectedOn  map[string]bool
	rollingBack bool
	// before is what the group ran before the rollout to the image and
	// revision of beforeFor, as the last round that saw it on a server
	// found it: in a group that deletes its old servers before creating
	// (a group of one, max_surge 0), no server holds it at the create.
	before, beforeFor plan.Ref
	// Postponements: when this reconciler first saw the rollout to do
	// (for the stall deadline), first listed each server, first saw each
	// stopped one, first saw each handover step; servers it created that
	// a list has not shown yet.
	rolloutSeen  keyedTime
	watched      map[string]time.Time
	stoppedSince map[string]time.Time
	stepSeen     map[string]stepSeen
	recent       map[string]recentCreate
	// gated is when each server received a data volume: its health is
	// judged anew from then on, since it passed its check without it.
	gated map[string]time.Time
	// lastSchedule is when backup.every last looked.
	lastSchedule time.Time
}

type haltState struct {
	key, reason string
	// recorded is true once the halt is on at least one server.
	recorded bool
}

type keyedTime struct {
	key string
	at  time.Time
}

type keyedProgress struct {
	key      string
	progress plan.Progress
}

// resolvedNames are the cloud's ids for the names in a group's spec.
type resolvedNames struct {
	flavor, serverGroup string
	networks            []string
}

// namesTTL bounds how long resolved names are trusted.
const namesTTL = time.Minute

// NewGroupReconciler wires one group. Close it to stop its health probes.
func NewGroupReconciler(g config.Group, cloud provisioner.Cloud, sink EventSink, log *zap.Logger, opts Options) *GroupReconciler {
	if d := g.Rollout.CreateBackoffMax.D(); d > 0 {
		opts.MaxCreateBackoff = d
	}
	opts.defaults()
	if sink == nil {
		sink = EventFunc(func(Event) {})
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("group", g.Name))
	logRollout := new(atomic.Pointer[string])
	if opts.Continuous {
		log = withRolloutLog(log, logRollout)
	} else {
		log = log.With(zap.String("rollout", opts.RolloutID))
	}
	cloud = cloud.Complete()
	tr, refused := newTraffic(g, cloud, log)
	// A service the group needs and the cloud lacks stops the group
	// before anything is touched.
	refuse := func(what string, clients ...any) {
		for _, c := range clients {
			if err := provisioner.Missing(c); err != nil && refused == nil {
				refused = fmt.Errorf("%w: group %s %s: %w", ErrStuck, g.Name, what, err)
			}
		}
	}
	if g.Backup.SnapshotBeforeDelete {
		refuse("asks for snapshots before delete", cloud.Snapshots)
	}
	if g.Backup.Volumes == config.VolumesSnapshot {
		refuse("asks for backup.volumes snapshot", cloud.Volumes)
	}
	if g.Stateful != nil {
		refuse("is stateful (its volumes move between servers)", cloud.Volumes, cloud.ServerActions)
	}
	if g.Rollout.Strategy == config.StrategyRebuild {
		refuse("asks for rollout.strategy rebuild", cloud.ServerActions)
	}
	bl := opts.Blocker
	if p := g.Rollout.Blockers.Prometheus; bl == nil && p != nil {
		prom, err := blocker.NewPrometheus(blocker.PrometheusConfig{URL: p.URL, Query: p.Query, Timeout: p.Timeout.D()})
		if err != nil && refused == nil {
			refused = fmt.Errorf("%w: group %s: rollout.blockers.prometheus: %w", ErrStuck, g.Name, err)
		}
		if err == nil {
			bl = prom
		}
	}
	return &GroupReconciler{
		group:        g,
		revision:     Revision(g),
		cloud:        cloud,
		health:       healthcheck.NewChecker(log, healthcheck.WithClock(opts.Now)),
		traffic:      tr,
		refused:      refused,
		blocker:      bl,
		sink:         sink,
		log:          log,
		opts:         opts,
		backoff:      opts.CreateBackoff,
		failedSeen:   map[string]bool{},
		ledger:       newLedger(opts.Now()),
		rolloutID:    opts.RolloutID,
		logRollout:   logRollout,
		watched:      map[string]time.Time{},
		stoppedSince: map[string]time.Time{},
		stepSeen:     map[string]stepSeen{},
		recent:       map[string]recentCreate{},
		gated:        map[string]time.Time{},
		zoneFailures: map[string]time.Time{},
	}
}

// Close stops the health probes.
func (r *GroupReconciler) Close() { r.health.Close() }

// HealthChanges signals when a server's health changes: a reason to look
// again before the next poll.
func (r *GroupReconciler) HealthChanges() <-chan struct{} { return r.health.Changes() }

// ProbeStats counts the group's health probes.
func (r *GroupReconciler) ProbeStats() healthcheck.Stats { return r.health.Stats() }

// Force adds a forced rebuild. It lasts until the group has converged
// with no server left that it designates.
func (r *GroupReconciler) Force(f plan.Force) {
	r.mu.Lock()
	r.forces = append(r.forces, f)
	r.mu.Unlock()
}

// Logger is the group's log: each line names the group, and the rollout
// while one is under way.
func (r *GroupReconciler) Logger() *zap.Logger { return r.log }

// Rollout names the rollout in progress.
func (r *GroupReconciler) Rollout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rolloutID
}

// Reconcile observes the group, plans, acts, and reports once.
func (r *GroupReconciler) Reconcile(ctx context.Context) (plan.Decision, error) {
	dec, err := r.reconcile(ctx)
	r.mu.Lock()
	r.lastErr = err
	if errors.Is(err, coordination.ErrNotOwner) {
		r.fenced = true
	}
	r.mu.Unlock()
	switch {
	case errors.Is(err, ErrAwaitingStage):
		r.log.Debug("waiting for an earlier stage", zap.Error(err))
	case err != nil && ctx.Err() == nil:
		r.log.Warn("reconcile failed", zap.Error(err))
		r.emit(Event{Type: EventError, Message: err.Error()})
	}
	return dec, err
}

func (r *GroupReconciler) reconcile(ctx context.Context) (plan.Decision, error) {
	w, err := r.observe(ctx, lookToAct)
	if err != nil {
		return plan.Decision{}, err
	}
	now := r.opts.Now()
	r.mu.Lock()
	r.rollingBack = w.rollingBack
	if r.deferred {
		r.undeferred = now
	}
	if r.fenced {
		r.fenced, r.unfenced = false, now
	}
	r.mu.Unlock()
	r.failedBoots(w.servers, now)
	t := r.target(w, now)
	unlisted := r.unlisted(w.servers, now)
	var placeRecord map[string]string
	if r.opts.Place != nil {
		// A location of a placed group: its part of the budgets.
		var lt plan.LocationTarget
		lt, placeRecord = r.opts.Place(w.servers, len(unlisted), now)
		if lt.Frozen {
			return plan.Decision{}, nil
		}
		t.Count, t.MaxSurge, t.MaxUnavailable = lt.Count, lt.MaxSurge, lt.MaxUnavailable
		r.mu.Lock()
		if r.sharing && lt.Waiting == "" {
			r.sharingEnded = now
		}
		r.sharing = lt.Waiting != ""
		t.Sharing, t.SharingEnded = lt.Waiting, r.sharingEnded
		r.mu.Unlock()
	}
	in := append(r.planInput(w, now), unlisted...)
	dec := plan.Plan(t, in, now)
	r.mu.Lock()
	r.deferred = dec.Status.Deferred > 0
	if !dec.Previous.IsZero() {
		r.before, r.beforeFor = dec.Previous, plan.Ref{ImageID: t.ImageID, Revision: t.Revision}
	}
	r.mu.Unlock()
	if dec.Status.Converged {
		r.mu.Lock()
		r.rolloutSeen = keyedTime{}
		r.mu.Unlock()
	}
	r.report(dec, t, w.image, now)
	r.checkFreshness(w.image, now)
	err = r.act(ctx, w, t, dec, now)
	if err == nil {
		r.promote(ctx, w, dec.Status.Promotion, now)
	}
	if len(placeRecord) > 0 {
		// Where the other locations stand, so that a restart finds a
		// location down at once rather than after failover_after again.
		r.recordOnServers(ctx, holders(w.servers), placeRecord, "locations")
	}
	return dec, err
}

// target is the group's desired state for the plan, with what is recorded
// on its servers about the rollout to it.
func (r *GroupReconciler) target(w world, now time.Time) plan.Target {
	g := r.group
	key := rolloutKey(w.image.ID, r.revision)
	t := plan.Target{
		Count:            g.Count,
		MaxSurge:         g.Rollout.MaxSurge.Resolve(g.Count, true),
		MaxUnavailable:   g.Rollout.MaxUnavailable.Resolve(g.Count, false),
		MinReady:         g.Rollout.MinReady.D(),
		ImageID:          w.image.ID,
		Revision:         r.revision,
		RebuildBefore:    r.opts.RebuildBefore,
		RebuildReason:    r.opts.RebuildReason,
		RebuildUrgent:    r.opts.RebuildUrgent,
		Only:             r.opts.Only,
		Zones:            g.AvailabilityZones,
		ProgressDeadline: g.Rollout.ProgressDeadline.D(),
		MaxFailures:      g.Rollout.MaxFailures,
		Canary:           g.Rollout.Canary,
		CanaryBake:       g.Rollout.CanaryBake.D(),
		PauseAfterCanary: g.Rollout.PauseAfterCanary,
		Promoted:         w.record.promoted,
		PromotedAt:       w.record.promotedAt,
		MaxAge:           g.MaxAge.D(),
		MaxUnhealthy:     g.Health.MaxUnhealthy.Resolve(g.Count, false),
		HealAfter:        g.Health.Interval.D() * time.Duration(max(1, g.Health.UnhealthyThreshold)),
		Halted:           r.haltedBy(w.record, key),
		Progress:         r.recordedProgress(w.record, key),
		WatchedSince:     r.firstSawRollout(key, now),
		Stateful:         g.Stateful != nil,
		InFlight:         w.inflight,
		FreeVolumes:      w.free,
		RebuildInPlace:   g.Rollout.Strategy == config.StrategyRebuild,
		Watch:            g.Rollout.Watch.D(),
		Rollback:         g.Rollout.OnFailure == config.OnFailureRollback,
		RollingBack:      w.rollingBack,
		NoRollback:       w.noRollback,
		Blocked:          w.blocked,
		Windows:          g.Rollout.PlanWindows(),
	}
	switch {
	case g.Hold:
		t.Held = "in the configuration (hold: true)"
	case !w.record.hold.isZero():
		t.Held = w.record.hold.String()
	}
	if w.rollingBack {
		t.Rejected = w.rejection.rejected
	}
	if p := g.Promote; p != nil {
		t.Promote = &plan.Promote{Tag: p.Tag, After: p.After.D()}
		t.ImageTags = w.image.Tags
		t.PromotedImage = w.record.staged
		r.mu.Lock()
		if r.staged.At.After(t.PromotedImage.At) {
			t.PromotedImage = r.staged
		}
		t.PromoteFailed = r.promoteFailed
		r.mu.Unlock()
	}
	t.Settle = settle(g)
	r.mu.Lock()
	if r.beforeFor == (plan.Ref{ImageID: t.ImageID, Revision: t.Revision}) {
		t.Before = r.before
	}
	t.Forces = append([]plan.Force(nil), r.forces...)
	t.QuotaWait, t.QuotaFreed = r.quotaWait, r.quotaFreed
	t.Undeferred, t.HandoverEnded, t.Unfenced = r.undeferred, r.handoverEnded, r.unfenced
	t.ZoneFailures, t.ZoneAvoid = maps.Clone(r.zoneFailures), zoneAvoid
	r.mu.Unlock()
	switch {
	case g.Traffic.Octavia != nil:
		t.Traffic, t.Drain = true, g.Traffic.Octavia.Drain.D()
	case g.Traffic.FloatingIP != nil:
		t.Traffic, t.SingleTraffic, t.Drain = true, true, g.Traffic.FloatingIP.Drain.D()
	}
	// The chaos harness's known bugs widen the bounds here, at the edge;
	// a production build has none.
	if bugOn(BugSurgeIgnored) {
		t.MaxSurge = 100 * (t.Count + 1)
	}
	if bugOn(BugEarlyDelete) {
		t.MaxUnavailable = t.Count
	}
	if bugOn(BugSteeringIgnored) {
		t.Held, t.Blocked, t.Windows = "", "", nil
	}
	return t
}

// settle is how long a reconciler watches a group before it judges its
// servers' health: every server's check has had its thresholds' worth of
// probes.
func settle(g config.Group) time.Duration {
	if healthProber(g.Health) == nil {
		return 0
	}
	return g.Health.Interval.D() * time.Duration(max(1, g.Health.HealthyThreshold, g.Health.UnhealthyThreshold))
}

// firstSawRollout is when this reconciler first saw the group with the
// rollout to key to do (it forgets once the group converges).
func (r *GroupReconciler) firstSawRollout(key string, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rolloutSeen.key != key || r.rolloutSeen.at.IsZero() {
		r.rolloutSeen = keyedTime{key: key, at: now}
	}
	return r.rolloutSeen.at
}

// haltedBy says why the rollout to key is halted, or "". The record is on
// the group's servers, so that a restart keeps the halt; it is kept in
// memory too for a group with no server to hold it. A record that was
// written and is gone was lifted by `phoenix resume`.
func (r *GroupReconciler) haltedBy(rec groupRecord, key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.haltSeen {
		r.halted = haltState{key: key, reason: rec.halted, recorded: true}
		return rec.halted
	}
	switch {
	case r.halted.key != key:
		return ""
	case r.halted.recorded:
		r.log.Info("the halt was lifted", zap.String("revision", key))
		r.halted, r.progress = haltState{}, keyedProgress{}
		return ""
	}
	return r.halted.reason
}

// knownRejection is the rollback on record: the latest on the servers,
// or, while none shows one, the last this reconciler made. One that a
// server still listed carried and no longer does was lifted by `phoenix
// resume`; servers gone with it (a halted round removes the failed new
// servers, which may be the only ones that took it) lift nothing.
func (r *GroupReconciler) knownRejection(seen rejection, servers []provisioner.Server) rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !seen.isZero() && !seen.at.Before(r.rejected.at):
		r.rejected, r.rejectedRecorded = seen, true
		r.rejectedOn = map[string]bool{}
		for _, s := range servers {
			if j, ok := parseRejection(s.Metadata); ok && j.at.Equal(seen.at) {
				r.rejectedOn[s.ID] = true
			}
		}
	case seen.isZero() && r.rejectedRecorded && slices.ContainsFunc(servers, func(s provisioner.Server) bool { return r.rejectedOn[s.ID] }):
		r.log.Info("the rollback was lifted", zap.String("image", r.rejected.rejected.ImageID))
		r.rejected, r.rejectedRecorded, r.rejectedOn = rejection{}, false, nil
	}
	return r.rejected
}

// Rejected says which image a rollback rejected, and why, while the group
// runs the image it went back to instead; "" otherwise.
func (r *GroupReconciler) Rejected() (image, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.rollingBack {
		return "", ""
	}
	return r.rejected.rejected.ImageID, r.rejected.reason
}

// RejectedSince says whether the rollback in force was recorded at or
// after t (by this run, for a one-shot rebuild).
func (r *GroupReconciler) RejectedSince(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rollingBack && !r.rejected.at.Before(t)
}

// DesiredImage is the image the last reconcile went to: the selector's, or
// the one a rollback went back to.
func (r *GroupReconciler) DesiredImage() provisioner.Image {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastImg
}

// recordedProgress is the rollout's progress record: the one on the
// servers, or, while no server can hold one, the last this reconciler
// decided.
func (r *GroupReconciler) recordedProgress(rec groupRecord, key string) plan.Progress {
	if rec.progressSeen {
		return rec.progress
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.holders == 0 && r.progress.key == key {
		return r.progress.progress
	}
	return plan.Progress{}
}

// Stuck reports why the group cannot make progress without a human, or nil.
func (r *GroupReconciler) Stuck() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr != nil && errors.Is(r.lastErr, ErrStuck) {
		return r.lastErr
	}
	if r.refusals >= refusalsBeforeStuck && r.createErr != nil {
		return fmt.Errorf("%w: the cloud refused %d creates in a row: %w", ErrStuck, r.refusals, r.createErr)
	}
	if r.halted.reason != "" && r.halted.key == rolloutKey(r.lastImg.ID, r.revision) {
		return fmt.Errorf("%w: image %s, revision %s: %s; %s",
			ErrHalted, r.lastImg.ID, r.revision, r.halted.reason, haltAdvice(r.group.Name, r.halted.reason))
	}
	return nil
}

// haltAdvice says what to do about a halt, by its cause: a bad image, a
// rollout that stalled with nothing failing, or a rollback that cannot be
// done.
func haltAdvice(group, reason string) string {
	switch {
	case strings.Contains(reason, "cannot roll back"):
		return fmt.Sprintf("publish a fixed image, or name an image to go back to: `phoenix rollback --group %s --to IMAGE`", group)
	case plan.IsStall(reason):
		return fmt.Sprintf("nothing failed and nothing moved: look at the cloud (quota, capacity, the network, the pool), then run `phoenix resume --group %s`", group)
	}
	return fmt.Sprintf("publish a fixed image (a new image lifts the halt), or fix the cause and run `phoenix resume --group %s`", group)
}
