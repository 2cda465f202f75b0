package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Options tune one group's reconciler.
type Options struct {
	// RolloutID names this run in events, logs and the metadata of the
	// servers it creates.
	RolloutID string
	// RebuildBefore forces the replacement of servers created before it.
	RebuildBefore time.Time
	RebuildReason string
	// PollInterval is the longest wait between reconciles. Default 2s.
	PollInterval time.Duration
	// Parallelism bounds concurrent create and delete requests. Default 8.
	Parallelism int
	// CreateBackoff is the first pause after the cloud refuses a create
	// (quota, or a 4xx); it doubles up to MaxCreateBackoff so a full
	// quota is not hammered. Defaults 10s and 5m.
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
	if o.MaxCreateBackoff < o.CreateBackoff {
		o.MaxCreateBackoff = max(5*time.Minute, o.CreateBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrStuck wraps the reason a group cannot make progress without a human:
// its image, flavor or network cannot be found, the cloud keeps refusing
// its creates, or its new servers keep going to ERROR.
var ErrStuck = errors.New("cannot proceed")

// GroupReconciler keeps one group converging on its spec. It is
// level-triggered: every Reconcile re-reads the servers and the image and
// decides again. What it keeps in memory only paces it (create backoff) or
// feeds reports (events, the old→new pairs); no decision depends on it.
type GroupReconciler struct {
	group config.Group
	// revision is Revision(group), fixed for the reconciler's life.
	revision string
	cloud    provisioner.Cloud
	health   *healthcheck.Checker
	// traffic moves requests between the servers; nil when the group has
	// none, trafficErr when the cloud cannot do what the group asks.
	traffic    traffic
	trafficErr error
	sink       EventSink
	log        *zap.Logger
	opts       Options

	mu            sync.Mutex
	blockedUntil  time.Time
	backoff       time.Duration
	refusals      int
	lastErr       error
	createErr     error
	lastStatus    Status
	announced     bool
	failedSeen    map[string]bool
	bootFailures  int
	lastFault     string
	ledger        *ledger
	recent        map[string]recentCreate
	deletesIssued int
	createsIssued int
	// rolloutID names the rollout in progress (Options.RolloutID at
	// first); forces are rebuilds asked for by events, kept until the
	// group converges past them.
	rolloutID string
	forces    []Force
	lastImage string
	seen      []Seen
	// halted is the last halt seen or made; progressAt when the rollout
	// last made progress (started, or a new server became ready).
	halted     haltState
	progressAt time.Time
	// names is the flavor, networks and server group resolved for the
	// last creates, kept for namesTTL: a rollout costs the cloud one
	// lookup each, not one per round that creates. A failed create drops
	// it (the name may point elsewhere now).
	names   resolvedNames
	namesAt time.Time
	// freshness is the age of the gold image at the last reconcile.
	freshness Freshness
	// lastSchedule is when backup.every last looked.
	lastSchedule time.Time
	// gated is when each server received a data volume: its health is
	// judged anew from then on, since it passed its check without it.
	gated map[string]time.Time
	// stepSeen is, for each volume in a handover, the step this
	// reconciler first saw it at and when: a step's deadline runs from
	// the later of its record and that (see handoverClock).
	stepSeen map[string]stepSeen
	// watched is when this reconciler first listed each server.
	watched map[string]time.Time
}

// resolvedNames are the cloud's ids for the names in a group's spec.
type resolvedNames struct {
	flavor, serverGroup string
	networks            []string
}

// namesTTL bounds how long resolved names are trusted.
const namesTTL = time.Minute

// Force asks for the replacement of a group's servers created before
// Before, all of them or — when ImageID is set — those of that image and
// Revision: a security patch, or everything built like a compromised
// server.
type Force struct {
	Before            time.Time
	ImageID, Revision string
	Reason            string
}

// Force adds a forced rebuild. It lasts until the group has converged
// with no server left that it designates.
func (r *GroupReconciler) Force(f Force) {
	r.mu.Lock()
	r.forces = append(r.forces, f)
	r.mu.Unlock()
}

func (r *GroupReconciler) rollout() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rolloutID
}

// NewGroupReconciler wires one group. Close it to stop its health probes.
func NewGroupReconciler(g config.Group, cloud provisioner.Cloud, sink EventSink, log *zap.Logger, opts Options) *GroupReconciler {
	opts.defaults()
	if sink == nil {
		sink = EventFunc(func(Event) {})
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("group", g.Name))
	if !opts.Continuous {
		log = log.With(zap.String("rollout", opts.RolloutID))
	}
	cloud = cloud.Complete()
	tr, trErr := newTraffic(g, cloud, log)
	// A service the group needs and the cloud lacks stops the group
	// before anything is touched.
	refuse := func(what string, clients ...any) {
		for _, c := range clients {
			if err := provisioner.Missing(c); err != nil && trErr == nil {
				trErr = fmt.Errorf("%w: group %s %s: %w", ErrStuck, g.Name, what, err)
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
	return &GroupReconciler{
		revision:   Revision(g),
		traffic:    tr,
		trafficErr: trErr,
		group:      g,
		cloud:      cloud,
		health:     healthcheck.NewChecker(log),
		sink:       sink,
		log:        log,
		opts:       opts,
		backoff:    opts.CreateBackoff,
		failedSeen: map[string]bool{},
		ledger:     newLedger(opts.Now()),
		recent:     map[string]recentCreate{},
		rolloutID:  opts.RolloutID,
	}
}

// recentCreate is a server this reconciler created, remembered until a
// list shows it (or for recentTTL): only to keep counting it through a list
// that misses it, never to act on it.
type recentCreate struct {
	name, image, revision string
	at                    time.Time
}

const recentTTL = 3 * time.Minute

// Close stops the health probes.
func (r *GroupReconciler) Close() { r.health.Close() }

// Reconcile observes the group, plans, and acts once.
func (r *GroupReconciler) Reconcile(ctx context.Context) (Decision, error) {
	dec, err := r.reconcile(ctx)
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		r.log.Warn("reconcile failed", zap.Error(err))
		r.emit(Event{Type: EventError, Message: err.Error()})
	}
	return dec, err
}

func (r *GroupReconciler) reconcile(ctx context.Context) (Decision, error) {
	tag := GroupTag(r.group.Name)
	resolve := r.cloud.Images.ResolveImage
	if r.opts.ResolveImage != nil {
		resolve = r.opts.ResolveImage
	}
	// The image is resolved while the servers are listed: a round waits
	// for the slower of the two, not for both.
	type resolved struct {
		img provisioner.Image
		err error
	}
	imgc := make(chan resolved, 1)
	go func() {
		img, err := resolve(ctx, selector(r.group.Image))
		imgc <- resolved{img, err}
	}()
	servers, err := r.cloud.Servers.ListServers(ctx, tag)
	got := <-imgc
	if err != nil {
		return Decision{}, err
	}
	r.remember(servers)
	img, err := got.img, got.err
	if err != nil {
		if errors.Is(err, provisioner.ErrNotFound) {
			err = fmt.Errorf("%w: %w", ErrStuck, err)
		}
		return Decision{}, fmt.Errorf("resolve the image of group %s: %w", r.group.Name, err)
	}

	now := r.opts.Now()
	target := r.target(img)
	live := make([]provisioner.Server, 0, len(servers))
	for _, s := range servers {
		if !s.Gone() {
			live = append(live, s)
		}
	}
	// Where the traffic stands is read before anything is acted on: a
	// pool that cannot be found stops the group before any server is
	// touched.
	var states map[string]TrafficState
	if r.trafficErr != nil {
		return Decision{}, r.trafficErr
	}
	if r.traffic != nil {
		if states, err = r.traffic.observe(ctx, live); err != nil {
			return Decision{}, fmt.Errorf("group %s: read %s: %w", r.group.Name, r.traffic, err)
		}
	}
	var (
		held     map[string][]string
		inflight []InFlight
	)
	if r.group.Stateful != nil {
		vols, err := r.groupVolumes(ctx, live)
		if err != nil {
			return Decision{}, err
		}
		var free []string
		held, inflight, free = statefulView(vols)
		target.Stateful, target.InFlight, target.FreeVolumes = true, inflight, free
	}
	r.watch(live)
	key := haltKey(img.ID, target.Revision)
	target.Halted = r.haltedBy(live, key)
	for _, s := range live {
		target.CanaryPromoted = target.CanaryPromoted || s.Metadata[MetaCanaryPassed] == key
	}
	in := append(r.planInput(live, states, now), r.unlisted(live, now)...)
	for i := range in {
		in[i].StatefulVolumes = held[in[i].ID]
	}
	dec := Plan(target, in, now)
	r.report(dec, img, now, len(target.Forces))
	r.checkFreshness(img, now)
	if target.Halted == "" {
		if reason := r.shouldHalt(dec, target, now); reason != "" {
			r.halt(ctx, live, img, target.Revision, reason)
			// Not haltedBy(live): that list predates the halt's marks, and
			// a recorded halt missing from the servers reads as lifted by
			// hand — the round would go on creating what it just halted.
			target.Halted = reason
			dec = Plan(target, in, now)
			r.mu.Lock()
			r.lastStatus = dec.Status
			r.mu.Unlock()
		}
	}

	// The steps of a round go in parallel where nothing orders them, so a
	// round costs the slowest chain of requests, not their sum: the
	// creates the plan allowed do not wait on the deletes (the plan
	// counted the servers to delete as still there), and the record that
	// new servers served is written while the deletes are recorded — a
	// delete is sent only once that record is written.
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		r.recordReady(ctx, dec, now)
	}()
	var createErr error
	created := make(chan struct{})
	go func() {
		defer close(created)
		if len(dec.Creates) > 0 {
			createErr = r.createServers(ctx, dec.Creates, img, target, now)
		}
	}()
	var errs []error
	if r.traffic != nil {
		if err := r.traffic.cleanup(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.deleteServers(ctx, dec.Deletes, ready, now); err != nil {
		errs = append(errs, err)
	}
	if err := r.drainServers(ctx, dec.Drains, now); err != nil {
		errs = append(errs, err)
	}
	if err := r.reimageServers(ctx, dec.Reimages, live, img, now); err != nil {
		errs = append(errs, err)
	}
	if r.group.Stateful != nil {
		started := r.startHandovers(ctx, dec.Handovers, now)
		halt, err := r.advanceHandovers(ctx, append(slices.Clone(inflight), started...), dec, live, now)
		if err != nil {
			errs = append(errs, err)
		}
		if halt != "" && target.Halted == "" {
			r.halt(ctx, live, img, target.Revision, halt)
		}
	}
	if err := r.scheduleVolumeSnapshots(ctx, dec.Servers, now); err != nil {
		errs = append(errs, err)
	}
	if err := r.addTraffic(ctx, dec.AddTraffic); err != nil {
		errs = append(errs, err)
	}
	<-ready
	<-created
	errs = append(errs, createErr)
	return dec, errors.Join(errs...)
}

func selector(s config.ImageSelector) provisioner.ImageSelector {
	return provisioner.ImageSelector{ID: s.ID, Name: s.Name, Properties: s.Properties, Tags: s.Tags, Newest: s.Newest}
}

func (r *GroupReconciler) target(img provisioner.Image) Target {
	g := r.group
	t := Target{
		ProgressDeadline: g.Rollout.ProgressDeadline.D(),
		MaxUnhealthy:     -1,
		MaxAge:           g.MaxAge.D(),
		Canary:           g.Rollout.Canary,
		CanaryBake:       g.Rollout.CanaryBake.D(),
		PauseAfterCanary: g.Rollout.PauseAfterCanary,
		Count:            g.Count,
		MaxSurge:         g.Rollout.MaxSurge.Resolve(g.Count, true),
		MaxUnavailable:   g.Rollout.MaxUnavailable.Resolve(g.Count, false),
		MinReady:         g.Rollout.MinReady.D(),
		ImageID:          img.ID,
		Revision:         r.revision,
		RebuildBefore:    r.opts.RebuildBefore,
		RebuildReason:    r.opts.RebuildReason,
		Zones:            g.AvailabilityZones,
		RebuildInPlace:   g.Rollout.Strategy == config.StrategyRebuild,
	}
	if r.prober() != nil {
		t.MaxUnhealthy = g.Health.MaxUnhealthy.Resolve(g.Count, false)
		t.HealAfter = g.Health.Interval.D() * time.Duration(max(1, g.Health.UnhealthyThreshold))
	}
	r.mu.Lock()
	t.Forces = append([]Force(nil), r.forces...)
	r.mu.Unlock()
	switch {
	case g.Traffic.Octavia != nil:
		t.Traffic, t.Drain = true, g.Traffic.Octavia.Drain.D()
	case g.Traffic.FloatingIP != nil:
		t.Traffic, t.SingleTraffic, t.Drain = true, true, g.Traffic.FloatingIP.Drain.D()
	}
	return t
}

// watch hands the ACTIVE servers that are not on their way out to the
// health checker.
func (r *GroupReconciler) watch(servers []provisioner.Server) {
	prober := r.prober()
	if prober == nil {
		return
	}
	h := r.group.Health
	policy := healthcheck.Policy{
		Interval: h.Interval.D(),
		// A new server is probed more often until it first passes: the
		// rollout learns sooner that it serves, at the cost of a few probes
		// per booting server.
		RiseInterval:       h.RiseInterval.D(),
		Timeout:            h.Timeout.D(),
		HealthyThreshold:   h.HealthyThreshold,
		UnhealthyThreshold: h.UnhealthyThreshold,
		Grace:              h.Grace.D(),
	}
	r.mu.Lock()
	for id := range r.gated {
		if !slices.ContainsFunc(servers, func(s provisioner.Server) bool { return s.ID == id }) {
			delete(r.gated, id)
		}
	}
	r.mu.Unlock()
	var targets []healthcheck.Target
	for _, s := range servers {
		if s.Status != provisioner.StatusActive || s.TaskState == provisioner.TaskDeleting || s.Metadata[MetaPhase] == PhaseDeleting {
			continue
		}
		addr := address(s, r.group.Networks)
		if addr == "" {
			continue
		}
		// Probing starts over when the server boots again: its launch,
		// or a rebuild in place recorded later than that.
		since := s.LaunchedAt
		if since.IsZero() {
			since = s.Created
		}
		if t, err := time.Parse(time.RFC3339Nano, s.Metadata[MetaCreatedAt]); err == nil && t.After(since) {
			since = t
		}
		r.mu.Lock()
		if t := r.gated[s.ID]; t.After(since) {
			since = t
		}
		r.mu.Unlock()
		targets = append(targets, healthcheck.Target{ID: s.ID, Address: addr, Prober: prober, Policy: policy, Since: since})
	}
	r.health.Watch(targets)
}

func (r *GroupReconciler) prober() healthcheck.Prober { return healthProber(r.group.Health) }

// healthProber builds the probe a group's health check asks for, or nil
// when the group has none (then ACTIVE is the only signal).
func healthProber(h config.Health) healthcheck.Prober {
	switch {
	case h.HTTP != nil:
		return healthcheck.HTTPProbe{Port: h.HTTP.Port, Path: h.HTTP.Path, ExpectStatus: h.HTTP.ExpectStatus}
	case h.TCP != nil:
		return healthcheck.TCPProbe{Port: h.TCP.Port}
	}
	return nil
}

// address picks the address to probe: on the group's first network when
// the cloud names it that way, else the first address in network order.
func address(s provisioner.Server, networks []string) string {
	if len(networks) > 0 {
		if list := s.Addresses[networks[0]]; len(list) > 0 {
			return list[0]
		}
	}
	names := make([]string, 0, len(s.Addresses))
	for n := range s.Addresses {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if list := s.Addresses[n]; len(list) > 0 {
			return list[0]
		}
	}
	return ""
}

func (r *GroupReconciler) planInput(servers []provisioner.Server, traffic map[string]TrafficState, now time.Time) []Server {
	checked := r.prober() != nil
	watched := r.firstListed(servers, now)
	out := make([]Server, 0, len(servers))
	for _, s := range servers {
		p := planServer(s)
		p.Traffic = traffic[s.ID]
		p.WatchedSince = watched[s.ID]
		switch {
		case !checked:
			// Without a health check, ACTIVE is the only signal there is.
			if s.Status == provisioner.StatusActive {
				p.Health = healthcheck.Healthy
				p.HealthySince = s.LaunchedAt
			}
		default:
			if o, ok := r.health.Observe(s.ID); ok {
				p.Health = o.State
				p.HealthError = o.LastError
				switch o.State {
				case healthcheck.Healthy:
					p.HealthySince = o.Since
				case healthcheck.Unhealthy:
					p.UnhealthySince = o.Since
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// firstListed returns when this reconciler first listed each server, and
// forgets the servers no longer listed.
func (r *GroupReconciler) firstListed(servers []provisioner.Server, now time.Time) map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]time.Time, len(servers))
	for _, s := range servers {
		next[s.ID] = cmp.Or(r.watched[s.ID], now)
	}
	r.watched = next
	return maps.Clone(next)
}

// unlisted returns the servers this reconciler created lately that the list
// did not show, and forgets the ones it did show or that are too old.
func (r *GroupReconciler) unlisted(listed []provisioner.Server, now time.Time) []Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	shown := make(map[string]bool, len(listed))
	for _, s := range listed {
		shown[s.ID] = true
	}
	var out []Server
	for id, c := range r.recent {
		switch {
		case shown[id] || now.Sub(c.at) > recentTTL:
			delete(r.recent, id)
		default:
			r.log.Warn("a server created moments ago is missing from the list; counting it", zap.String("server", id), zap.String("name", c.name))
			out = append(out, Server{ID: id, Name: c.name, Status: provisioner.StatusBuild, ImageID: c.image,
				Revision: c.revision, Created: c.at, Unlisted: true})
		}
	}
	return out
}

// planServer reads what the plan needs from a server: the cloud's view
// plus Phoenix's record in its metadata. Health is left Unknown.
func planServer(s provisioner.Server) Server {
	p := Server{
		ID:        s.ID,
		Name:      s.Name,
		Status:    s.Status,
		TaskState: s.TaskState,
		Zone:      s.AvailabilityZone,
		ImageID:   s.ImageID,
		Revision:  s.Metadata[MetaRevision],
		Created:   s.Created,
		Phase:     s.Metadata[MetaPhase],
		Reason:    s.Metadata[MetaReason],
		Fault:     s.Fault,

		RebuildMark: s.Metadata[MetaRebuild],
		Compromised: s.Metadata[MetaCompromised],
		WasReady:    s.Metadata[MetaReadyAt] != "",
		DrainThen:   s.Metadata[MetaDrainThen],
		Volumes:     s.Volumes,
	}
	if t, err := time.Parse(time.RFC3339Nano, s.Metadata[MetaCreatedAt]); err == nil {
		p.Created = t
	}
	if p.Phase == PhaseDraining {
		// A drain whose start cannot be read started now: it is never
		// cut short.
		if t, err := time.Parse(time.RFC3339Nano, s.Metadata[MetaPhaseAt]); err == nil {
			p.DrainStart = t
		}
	}
	return p
}

// deleteServers records the phase on each server, then asks for its
// delete. A server whose phase cannot be written is not deleted: a restart
// must always find the record of a decided delete. With backups on, a
// server is deleted only once its snapshot is active; until then its
// delete waits (the plan decides it again next time).
func (r *GroupReconciler) deleteServers(ctx context.Context, deletes []Delete, ready <-chan struct{}, now time.Time) error {
	var snapped, volSnapped atomic.Bool
	err := parallel(deletes, r.opts.Parallelism, func(d Delete) error {
		if !d.Resume && r.needsSnapshot(d.Server) {
			ok, err := r.snapshotFirst(ctx, d.Server, now)
			if err != nil || !ok {
				return err
			}
			snapped.Store(true)
		}
		if !d.Resume && r.needsVolumeSnapshots(d.Server) {
			ok, err := r.volumesFirst(ctx, d.Server, now)
			if err != nil || !ok {
				return err
			}
			volSnapped.Store(true)
		}
		if err := r.deleteOne(ctx, d, ready, now); err != nil {
			return err
		}
		r.mu.Lock()
		r.deletesIssued++
		r.mu.Unlock()
		replacedBy := ""
		if d.Server.Kind == KindOld {
			replacedBy = r.ledger.deleted(d.Server.Name, d.Server.ImageID, now)
		}
		r.log.Info("deleting server", zap.String("server", d.Server.ID), zap.String("name", d.Server.Name),
			zap.String("reason", d.Reason), zap.String("replaced_by", replacedBy))
		r.emit(Event{Type: EventDelete, Server: d.Server.ID, Name: d.Server.Name, Image: d.Server.ImageID,
			Reason: d.Reason, ReplacedBy: replacedBy})
		return nil
	})
	if snapped.Load() {
		if rerr := r.retain(ctx, now); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if volSnapped.Load() {
		if rerr := r.retainVolumes(ctx, now); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// parallel runs fn on every item, at most limit at a time, and joins the
// errors: one failed request must not hide the others.
func parallel[T any](items []T, limit int, fn func(T) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, max(1, limit))
	)
	for _, item := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(item); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *GroupReconciler) deleteOne(ctx context.Context, d Delete, ready <-chan struct{}, now time.Time) error {
	if !d.Resume && acceptsMetadata(d.Server.Server) {
		md := map[string]string{
			MetaPhase:   PhaseDeleting,
			MetaPhaseAt: now.UTC().Format(time.RFC3339Nano),
			MetaReason:  truncate(d.Reason, 255),
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, d.Server.ID, md); err != nil {
			return fmt.Errorf("record the delete of server %s (%s): %w", d.Server.Name, d.Server.ID, err)
		}
	}
	<-ready
	if r.traffic != nil && d.Server.Traffic != TrafficNone {
		// Out of the traffic before the server goes, so no request is
		// sent to a server that no longer answers.
		if err := r.traffic.remove(ctx, d.Server); err != nil {
			return fmt.Errorf("take server %s (%s) out of %s before its delete: %w", d.Server.Name, d.Server.ID, r.traffic, err)
		}
		r.log.Info("removed from traffic", zap.String("server", d.Server.ID), zap.String("name", d.Server.Name), zap.Stringer("traffic", r.traffic))
		r.emit(Event{Type: EventTrafficRemove, Server: d.Server.ID, Name: d.Server.Name, Message: "removed from " + r.traffic.String()})
	}
	return r.cloud.Servers.DeleteServer(ctx, d.Server.ID)
}

// drainServers records each drain's start on its server, then stops new
// requests to it. A server whose record cannot be written is not drained:
// a restart must find the start of every drain, to finish it rather than
// start it over.
func (r *GroupReconciler) drainServers(ctx context.Context, drains []Drain, now time.Time) error {
	return parallel(drains, r.opts.Parallelism, func(d Drain) error {
		if !d.Resume {
			md := map[string]string{
				MetaPhase:     PhaseDraining,
				MetaPhaseAt:   now.UTC().Format(time.RFC3339Nano),
				MetaReason:    truncate(d.Reason, 255),
				MetaDrainThen: d.Then,
			}
			if err := r.cloud.Servers.SetServerMetadata(ctx, d.Server.ID, md); err != nil {
				return fmt.Errorf("record the drain of server %s (%s): %w", d.Server.Name, d.Server.ID, err)
			}
		}
		if err := r.traffic.drain(ctx, d.Server); err != nil {
			return fmt.Errorf("drain server %s (%s) in %s: %w", d.Server.Name, d.Server.ID, r.traffic, err)
		}
		if !d.Resume {
			// The old server's place is taken when its traffic goes, so
			// that is when the pair is recorded.
			replacedBy := ""
			if d.Server.Kind == KindOld {
				replacedBy = r.ledger.deleted(d.Server.Name, d.Server.ImageID, now)
			}
			r.log.Info("draining server", zap.String("server", d.Server.ID), zap.String("name", d.Server.Name),
				zap.Time("until", d.Until), zap.String("reason", d.Reason), zap.String("replaced_by", replacedBy))
			r.emit(Event{Type: EventDrain, Server: d.Server.ID, Name: d.Server.Name, Image: d.Server.ImageID,
				Reason: d.Reason, ReplacedBy: replacedBy, Message: "draining until " + d.Until.UTC().Format(time.RFC3339)})
		}
		return nil
	})
}

// addTraffic puts ready servers into the traffic. They count as available
// once a later observation shows them serving.
func (r *GroupReconciler) addTraffic(ctx context.Context, servers []Classified) error {
	return parallel(servers, r.opts.Parallelism, func(c Classified) error {
		if err := r.traffic.add(ctx, c); err != nil {
			return fmt.Errorf("add server %s (%s) to %s: %w", c.Name, c.ID, r.traffic, err)
		}
		r.log.Info("added to traffic", zap.String("server", c.ID), zap.String("name", c.Name), zap.Stringer("traffic", r.traffic))
		r.emit(Event{Type: EventTrafficAdd, Server: c.ID, Name: c.Name, Image: c.ImageID, Message: "added to " + r.traffic.String()})
		return nil
	})
}

// acceptsMetadata reports whether Nova lets a server's metadata change: only
// in a settled state (ACTIVE, SHUTOFF, PAUSED, SUSPENDED) with no task in
// progress; otherwise it answers 409. A server that cannot take the record
// is not serving (BUILD, ERROR), so its delete needs none: a restarted
// controller decides to delete it again from what it sees.
func acceptsMetadata(s Server) bool {
	switch s.Status {
	case provisioner.StatusActive, "SHUTOFF", "PAUSED", "SUSPENDED":
		return s.TaskState == ""
	}
	return false
}

func (r *GroupReconciler) createServers(ctx context.Context, creates []Create, img provisioner.Image, t Target, now time.Time) error {
	r.mu.Lock()
	blocked := now.Before(r.blockedUntil)
	r.mu.Unlock()
	if blocked {
		return nil
	}
	spec, err := r.serverSpec(ctx, img, t)
	if err != nil {
		return err
	}
	// A failed create is reported on its own (event, log, Summary's
	// CreateError) and paces the next ones; it does not fail the cycle,
	// whose outcome the next list settles.
	_ = parallel(creates, r.opts.Parallelism, func(c Create) error { return r.createOne(ctx, spec, c, now) })
	return nil
}

// serverSpec resolves the names in the group spec. It runs only when
// servers are to be created, so a group at rest costs the cloud no flavor
// or network lookups.
func (r *GroupReconciler) serverSpec(ctx context.Context, img provisioner.Image, t Target) (provisioner.ServerSpec, error) {
	g := r.group
	stuck := func(err error) error {
		if errors.Is(err, provisioner.ErrNotFound) {
			return fmt.Errorf("%w: %w", ErrStuck, err)
		}
		return err
	}
	now := r.opts.Now()
	r.mu.Lock()
	names, fresh := r.names, !r.namesAt.IsZero() && now.Sub(r.namesAt) < namesTTL
	r.mu.Unlock()
	if !fresh {
		flavor, err := r.cloud.Servers.ResolveFlavor(ctx, g.Flavor)
		if err != nil {
			return provisioner.ServerSpec{}, stuck(fmt.Errorf("resolve the flavor of group %s: %w", g.Name, err))
		}
		nets := make([]string, 0, len(g.Networks))
		for _, n := range g.Networks {
			id, err := r.cloud.Servers.ResolveNetwork(ctx, n)
			if err != nil {
				return provisioner.ServerSpec{}, stuck(fmt.Errorf("resolve the networks of group %s: %w", g.Name, err))
			}
			nets = append(nets, id)
		}
		var serverGroup string
		if g.ServerGroup != "" {
			serverGroup, err = r.cloud.Servers.ResolveServerGroup(ctx, g.ServerGroup)
			if err != nil {
				return provisioner.ServerSpec{}, stuck(fmt.Errorf("resolve the server group of group %s: %w", g.Name, err))
			}
		}
		names = resolvedNames{flavor: flavor, networks: nets, serverGroup: serverGroup}
		r.mu.Lock()
		r.names, r.namesAt = names, now
		r.mu.Unlock()
	}
	spec := provisioner.ServerSpec{
		ImageID:        img.ID,
		FlavorID:       names.flavor,
		NetworkIDs:     slices.Clone(names.networks),
		KeyName:        g.KeyName,
		SecurityGroups: g.SecurityGroups,
		ServerGroupID:  names.serverGroup,
		UserData:       g.UserData,
		Metadata: map[string]string{
			MetaGroup:    g.Name,
			MetaRevision: t.Revision,
			MetaImage:    img.ID,
			MetaRollout:  r.rollout(),
		},
		Tags: []string{GroupTag(g.Name)},
	}
	if bugOn(BugUntagged) {
		spec.Tags = nil
	}
	return spec, nil
}

func (r *GroupReconciler) createOne(ctx context.Context, base provisioner.ServerSpec, c Create, now time.Time) error {
	requestID := uuid.NewString()
	spec := base
	spec.Name = fmt.Sprintf("%s-%s", r.group.Name, requestID[:8])
	spec.AvailabilityZone = c.Zone
	spec.Metadata = make(map[string]string, len(base.Metadata)+len(r.group.Metadata)+2)
	maps.Copy(spec.Metadata, r.group.Metadata)
	maps.Copy(spec.Metadata, base.Metadata)
	spec.Metadata[MetaRequestID] = requestID
	spec.Metadata[MetaCreatedAt] = now.UTC().Format(time.RFC3339Nano)

	s, err := r.cloud.Servers.CreateServer(ctx, spec)
	if err != nil {
		r.mu.Lock()
		r.namesAt = time.Time{}
		r.mu.Unlock()
		r.createFailed(err, now)
		r.log.Warn("create failed", zap.String("name", spec.Name), zap.String("request_id", requestID), zap.Error(err))
		r.emit(Event{Type: EventCreateErr, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone, Message: err.Error()})
		return err
	}
	r.mu.Lock()
	r.refusals = 0
	r.createErr = nil
	r.backoff = r.opts.CreateBackoff
	r.createsIssued++
	if r.announced {
		r.progressAt = now
	}
	r.recent[s.ID] = recentCreate{name: spec.Name, image: spec.ImageID, revision: spec.Metadata[MetaRevision], at: now}
	r.mu.Unlock()
	r.ledger.createdServer(s.ID, now)
	r.log.Info("created server", zap.String("server", s.ID), zap.String("name", spec.Name),
		zap.String("image", spec.ImageID), zap.String("zone", c.Zone), zap.String("request_id", requestID))
	r.emit(Event{Type: EventCreate, Server: s.ID, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone})
	return nil
}

// createFailed paces creates after a refusal. An unknown outcome is not a
// refusal: the next list decides whether the server exists.
func (r *GroupReconciler) createFailed(err error, now time.Time) {
	var refused *provisioner.RefusedError
	quota := provisioner.IsQuota(err)
	if !quota && !errors.As(err, &refused) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.createErr = err
	if !quota {
		r.refusals++
	}
	if until := now.Add(r.backoff); until.After(r.blockedUntil) {
		r.blockedUntil = until
		r.backoff = min(2*r.backoff, r.opts.MaxCreateBackoff)
	}
}

// refusalsBeforeStuck is how many creates in a row the cloud may refuse
// (other than for quota, which a human elsewhere may free) before the
// group is declared unable to proceed.
const refusalsBeforeStuck = 3

// recordReady writes, once, when each new server first served: a server
// that served is never mistaken later for a boot that missed its deadline.
func (r *GroupReconciler) recordReady(ctx context.Context, d Decision, now time.Time) {
	var todo []Classified
	for _, c := range d.Servers {
		// A stateful server serves only with its data volume.
		serves := c.Ready && (r.group.Stateful == nil || len(c.StatefulVolumes) > 0)
		if c.Kind == KindCurrent && serves && !c.WasReady && !c.Unlisted && acceptsMetadata(c.Server) {
			todo = append(todo, c)
		}
	}
	_ = parallel(todo, r.opts.Parallelism, func(c Classified) error {
		md := map[string]string{MetaReadyAt: now.UTC().Format(time.RFC3339)}
		if c.Phase == PhaseRebuilding {
			md[MetaPhase], md[MetaPhaseAt], md[MetaReason] = "", "", ""
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, c.ID, md); err != nil {
			r.log.Debug("could not record that a server is ready", zap.String("server", c.ID), zap.Error(err))
		}
		return nil
	})
}

// Resumed says what Resume did.
type Resumed struct {
	// Halts is how many servers carried a halt record, now removed.
	Halts int
	// Promoted is how many servers now carry the promotion of a paused
	// canary (the rest of the rollout goes on).
	Promoted int
}

// Resume lets a group go on: it lifts a halted rollout (removes the halt
// record, so the next reconcile — of any Phoenix, a daemon included —
// tries the revision again with a fresh failure budget) and promotes a
// canary that waits for it (records on the servers that the desired
// image and revision passed).
func Resume(ctx context.Context, cloud provisioner.Cloud, g config.Group) (Resumed, error) {
	var res Resumed
	cloud = cloud.Complete()
	servers, err := cloud.Servers.ListServers(ctx, GroupTag(g.Name))
	if err != nil {
		return res, err
	}
	img, err := cloud.Images.ResolveImage(ctx, selector(g.Image))
	if err != nil {
		return res, fmt.Errorf("resolve the image of group %s: %w", g.Name, err)
	}
	key := haltKey(img.ID, Revision(g))
	var mu sync.Mutex
	err = parallel(servers, 8, func(s provisioner.Server) error {
		if s.Gone() || !acceptsMetadata(planServer(s)) {
			return nil
		}
		md := map[string]string{}
		if s.Metadata[MetaHalted] != "" {
			md[MetaHalted], md[MetaHaltReason] = "", ""
		}
		if g.Rollout.PauseAfterCanary && s.Metadata[MetaCanaryPassed] != key {
			md[MetaCanaryPassed] = key
		}
		if len(md) == 0 {
			return nil
		}
		if err := cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			return fmt.Errorf("resume on server %s (%s): %w", s.Name, s.ID, err)
		}
		mu.Lock()
		if _, ok := md[MetaHalted]; ok {
			res.Halts++
		}
		if _, ok := md[MetaCanaryPassed]; ok {
			res.Promoted++
		}
		mu.Unlock()
		return nil
	})
	return res, err
}

// ErrPaused says a rollout waits, on purpose, for `phoenix resume`
// (rollout.pause_after_canary).
var ErrPaused = errors.New("paused after the canary")

// ErrHalted wraps the reason a rollout halted: its new servers kept
// failing, or it made no progress within its deadline. It is an ErrStuck.
var ErrHalted = fmt.Errorf("%w: rollout halted", ErrStuck)

// haltKey names what halted: a revision of the spec on one image. A new
// image or a new spec is a new rollout, not halted.
func haltKey(imageID, revision string) string { return imageID + "@" + revision }

// haltedBy says why the rollout to key is halted, or "". The record is on
// the group's servers (MetaHalted, MetaHaltReason), so that a restart
// keeps the halt; it is kept in memory too for a group with no server to
// hold it. A record that was written and is gone was lifted by
// `phoenix resume`.
func (r *GroupReconciler) haltedBy(servers []provisioner.Server, key string) string {
	for _, s := range servers {
		if s.Metadata[MetaHalted] == key {
			reason := s.Metadata[MetaHaltReason]
			r.mu.Lock()
			r.halted = haltState{key: key, reason: reason, recorded: true}
			r.mu.Unlock()
			return cmp.Or(reason, "halted")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.halted.key != key:
		return ""
	case r.halted.recorded:
		// Lifted by hand: a fresh start for this revision.
		r.log.Info("the halt was lifted", zap.String("revision", key))
		r.halted = haltState{}
		r.bootFailures, r.lastFault, r.progressAt = 0, "", time.Time{}
		return ""
	}
	return r.halted.reason
}

type haltState struct {
	key, reason string
	// recorded is true once the halt is on at least one server.
	recorded bool
}

// shouldHalt applies the failure budget and the progress deadline.
func (r *GroupReconciler) shouldHalt(d Decision, t Target, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d.Status.Paused || (d.Status.Canary && d.Status.Available >= t.Canary) {
		// Waiting on purpose (the bake, or a human) is not a lack of
		// progress.
		r.progressAt = now
	}
	budget := max(1, r.group.Rollout.MaxFailures)
	if r.bootFailures >= budget {
		return fmt.Sprintf("%d new servers went to ERROR or were not ready within %s (failure budget %d; last: %s)",
			r.bootFailures, t.ProgressDeadline, budget, r.lastFault)
	}
	// No progress: no new server became ready, and none was created, for
	// the deadline. A server failing right now is the failure budget's to
	// judge, and its replacement is progress; so is a new server still
	// booting or not yet healthy, which its own deadline judges — one
	// stuck in BUILD holding the only surge slot is one failure, not a
	// halt. A new server a data volume is moving to is progress too: each
	// step of the handover has its own deadline.
	pending := false
	for _, c := range d.Servers {
		pending = pending || c.Kind == KindCurrent && !c.Ready && !c.WasReady && !c.Unlisted || handingTo(t, c.ID)
	}
	if deadline := t.ProgressDeadline; deadline > 0 && !d.Status.Converged && d.Status.Failed == 0 && !pending && !r.progressAt.IsZero() && now.Sub(r.progressAt) > deadline {
		return fmt.Sprintf("no new server was created or became ready for %s (rollout.progress_deadline)", deadline)
	}
	return ""
}

// halt records the halt on every server that can take it, and says so
// loudly. Old servers keep serving; the plan removes the new ones that do
// not serve.
func (r *GroupReconciler) halt(ctx context.Context, servers []provisioner.Server, img provisioner.Image, revision, reason string) {
	key := haltKey(img.ID, revision)
	md := map[string]string{MetaHalted: key, MetaHaltReason: truncate(reason, 255)}
	var marks []provisioner.Server
	for _, s := range servers {
		if p := planServer(s); acceptsMetadata(p) && p.Phase == "" {
			marks = append(marks, s)
		}
	}
	var mu sync.Mutex
	recorded := false
	_ = parallel(marks, r.opts.Parallelism, func(s provisioner.Server) error {
		if err := r.cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			r.log.Warn("could not record the halt on a server", zap.String("server", s.ID), zap.Error(err))
			return nil
		}
		mu.Lock()
		recorded = true
		mu.Unlock()
		return nil
	})
	r.mu.Lock()
	r.halted = haltState{key: key, reason: reason, recorded: recorded}
	r.mu.Unlock()
	what := fmt.Sprintf("rollout of group %s to image %s (%s), revision %s, halted: %s. The old servers keep serving. "+
		"To go on: publish a fixed image (a new image lifts the halt), or fix the cause and run `phoenix resume --group %s`.",
		r.group.Name, img.Name, img.ID, revision, reason, r.group.Name)
	r.log.Error("rollout halted", zap.String("image", img.ID), zap.String("revision", revision), zap.String("reason", reason))
	r.emit(Event{Type: EventHalted, Image: img.ID, Reason: reason, Message: what})
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
	if r.halted.reason != "" && r.halted.key == haltKey(r.lastImage, r.revision) {
		return fmt.Errorf("%w: image %s, revision %s: %s; publish a fixed image or run `phoenix resume --group %s`",
			ErrHalted, r.lastImage, r.revision, r.halted.reason, r.group.Name)
	}
	return nil
}

// Summary is what a run of a group's reconciler did and where it stands.
type Summary struct {
	Group     string
	Status    Status
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

// report turns the difference between this observation and the last into
// events. It only feeds people; nothing reads it back.
func (r *GroupReconciler) report(d Decision, img provisioner.Image, now time.Time, forcesSeen int) {
	r.mu.Lock()
	var events []Event
	if img.ID != r.lastImage {
		// A new desired image is a new chance: the boot failures of the
		// last one say nothing about it.
		r.lastImage, r.bootFailures, r.lastFault = img.ID, 0, ""
		if r.announced {
			r.progressAt = now
		}
	}
	if !r.announced && !d.Status.Converged {
		r.announced = true
		r.progressAt = now
		events = append(events, Event{Type: EventRollout, Image: img.ID,
			Message: fmt.Sprintf("rolling group %s to image %s (%s), revision %s: %d old, %d current of %d",
				r.group.Name, img.Name, img.ID, r.revision, d.Status.Old, d.Status.Current, d.Status.Desired)})
	}
	failed := map[string]bool{}
	for _, c := range d.Servers {
		if c.Kind == KindCurrent && c.Available {
			if first, replaces := r.ledger.becameReady(c.ID, c.Name, c.ImageID, now); first && r.announced {
				events = append(events, Event{Type: EventReady, Server: c.ID, Name: c.Name, Image: c.ImageID, Replaces: replaces})
				r.progressAt = now
			}
		}
		if c.Kind == KindFailed {
			// One failure per boot: a server rebuilt in place again gets
			// a new created-at, and failing again is another failure.
			key := c.ID + "@" + c.Created.Format(time.RFC3339Nano)
			if !r.failedSeen[key] {
				events = append(events, Event{Type: EventFailed, Server: c.ID, Name: c.Name, Image: c.ImageID, Reason: c.Reason})
				if c.ImageID == img.ID && c.Revision == r.revision && !strings.HasPrefix(c.Reason, "compromised") {
					r.bootFailures++
					r.lastFault = c.Reason
					// The failure budget judges it; its replacement's
					// clock starts now.
					r.progressAt = now
				}
			}
			failed[key] = true
		}
	}
	r.failedSeen = failed
	if d.Status.HealBlocked && !r.lastStatus.HealBlocked {
		msg := fmt.Sprintf("%d of %d servers of group %s fail their health check at once, more than health.max_unhealthy allows: "+
			"replacing none, since the network or the check itself is the likelier fault; look at them", d.Status.Unhealthy, d.Status.Total, r.group.Name)
		r.log.Error("auto-heal blocked", zap.Int("unhealthy", d.Status.Unhealthy), zap.Int("servers", d.Status.Total))
		events = append(events, Event{Type: EventHealBlocked, Message: msg})
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
		// left. Ones added since stay.
		r.forces = r.forces[min(forcesSeen, len(r.forces)):]
		if r.opts.Continuous && r.announced {
			// The next drift is a new rollout, with its own id.
			r.announced = false
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
		e.Rollout = r.rollout()
	}
	e.Group = r.group.Name
	r.sink.Emit(e)
}

// Run reconciles until done says stop or ctx ends. It wakes up when a
// server's health changes, when a new server reaches min_ready, or after
// PollInterval, whichever comes first.
func (r *GroupReconciler) Run(ctx context.Context, done func(Decision, error) bool) error {
	for {
		d, err := r.Reconcile(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if done(d, err) {
			return err
		}
		wait := r.opts.PollInterval
		if d.RequeueAfter > 0 && d.RequeueAfter < wait {
			wait = d.RequeueAfter
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-r.health.Changes():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// truncate cuts s to at most n bytes without splitting a character
// (Nova's metadata values are at most 255).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
