package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// DaemonOptions tune a Daemon.
type DaemonOptions struct {
	Log  *zap.Logger
	Sink EventSink
	// Metrics receives what the daemon does; nil records nothing.
	Metrics *Metrics
	// PollInterval is how often a group that has not converged is
	// reconciled (sooner when health changes). Default 2s.
	PollInterval time.Duration
	// StopGrace is how long the step in flight may take once a stop is
	// asked for, before its requests are cancelled. Default 30s.
	StopGrace time.Duration
	// Reconciler options every group starts from (backoffs, parallelism).
	Reconciler Options
	Now        func() time.Time
	// Coordinator, when set, makes this daemon one of several replicas:
	// it runs workers only for the groups the coordinator says it owns,
	// each on a cloud fenced by the coordinator. Nil: every group here.
	Coordinator Coordinator
}

// Daemon keeps every group of a configuration converging, for as long as
// it runs: each group by its own worker (never two at once), at most
// Controller.ParallelGroups reconciling at the same moment, each at rest
// every Controller.Interval plus up to a tenth at random, and at once when
// an event or the image watch says so.
//
// It holds nothing that decides what exists: a worker's reconciler reads
// the servers each time. A stop lets the step in flight finish (for
// StopGrace) and starts no other; what was not done is found undone on
// the servers by the next start.
type Daemon struct {
	cloud provisioner.Cloud
	opts  DaemonOptions
	log   *zap.Logger

	mu        sync.Mutex
	cfg       *config.Config
	loadedAt  time.Time
	reloadErr error
	workers   map[string]*worker
	sem       chan struct{}
	running   bool
	stop      chan struct{} // closed when a stop is asked for
	hard      context.Context
	wg        sync.WaitGroup

	images *imageCache
	// watchOK is when the image watch last reached the cloud without
	// error; readiness needs it.
	watchOK  time.Time
	watchErr error
	watchNow chan struct{}

	// owned is the groups the coordinator gave this replica; nil when
	// the daemon is not coordinated (it then runs every group).
	owned map[string]bool
	// retiring are the workers a reload is stopping: a group's key is
	// given up only once its worker stopped.
	retiring map[*worker]bool
	// held are the rebuilds events asked of groups another replica
	// owned when they came: if this replica takes such a group over, it
	// does them too (a Force only designates servers built before its
	// event, so one the owner already did designates nothing).
	held map[string][]Force
}

// NewDaemon prepares a daemon for cfg; Run starts it.
func NewDaemon(cloud provisioner.Cloud, cfg *config.Config, opts DaemonOptions) *Daemon {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Sink == nil {
		opts.Sink = EventFunc(func(Event) {})
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cloud = cloud.Complete()
	d := &Daemon{
		cloud:    cloud,
		opts:     opts,
		log:      opts.Log,
		cfg:      cfg,
		loadedAt: opts.Now(),
		workers:  map[string]*worker{},
		retiring: map[*worker]bool{},
		held:     map[string][]Force{},
		stop:     make(chan struct{}),
		watchNow: make(chan struct{}, 1),
		images:   newImageCache(cloud),
	}
	if opts.Coordinator != nil {
		d.owned = map[string]bool{}
	}
	d.images.setTTL(cfg.Controller.Interval.D())
	return d
}

// worker owns one group: its reconciler and the loop that runs it.
type worker struct {
	group  config.Group
	rec    *GroupReconciler
	wake   chan struct{}
	quit   chan struct{} // closed to retire the worker (reload)
	done   chan struct{}
	urgent chan func(context.Context) // event actions, run before the next reconcile

	mu         sync.Mutex
	last       Decision
	lastErr    error
	lastAt     time.Time
	reconciled bool
	image      provisioner.Image
	halted     error
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends, then stops as described on Daemon.
func (d *Daemon) Run(ctx context.Context) error {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	d.mu.Lock()
	d.hard = hard
	d.running = true
	d.sem = make(chan struct{}, d.cfg.Controller.ParallelGroups)
	for _, g := range d.cfg.Groups {
		if d.mayRun(g.Name) {
			d.startWorker(g)
		}
	}
	d.mu.Unlock()
	d.opts.Metrics.configLoaded(true, d.loadedAt)

	d.wg.Add(1)
	go d.watchImages()
	if c := d.opts.Coordinator; c != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := c.Run(ctx, d.groupNames, d.applyOwned); err != nil {
				d.log.Error("sharing the groups with the other replicas stopped", zap.Error(err))
			}
		}()
	}

	<-ctx.Done()
	d.log.Info("stopping: letting the steps in flight finish", zap.Duration("grace", d.opts.StopGrace))
	close(d.stop)
	finished := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(d.opts.StopGrace):
		d.log.Warn("steps still in flight after the grace period: cancelling them; the next start resumes from the servers")
		cancelHard()
		<-finished
	}
	d.mu.Lock()
	for _, w := range d.workers {
		w.rec.Close()
	}
	d.mu.Unlock()
	return nil
}

// startWorker runs a worker for g. Call with d.mu held.
func (d *Daemon) startWorker(g config.Group) {
	cloud := d.cloud
	if c := d.opts.Coordinator; c != nil {
		cloud = c.Fence(g.Name, cloud)
	}
	opts := d.opts.Reconciler
	opts.Continuous = true
	opts.PollInterval = d.opts.PollInterval
	opts.ResolveImage = d.images.resolve
	if opts.Now == nil {
		opts.Now = d.opts.Now
	}
	w := &worker{
		group:  g,
		rec:    NewGroupReconciler(g, cloud, d.sink(g.Name), d.log, opts),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		urgent: make(chan func(context.Context), 64),
	}
	d.workers[g.Name] = w
	for _, f := range d.held[g.Name] {
		// Taken over: the rebuilds events asked while another replica
		// owned the group are recorded on its servers first thing (and
		// kept in memory even if that fails).
		w.urgent <- func(ctx context.Context) {
			if err := w.rec.MarkForRebuild(ctx, f); err != nil {
				d.log.Warn("could not record on the servers a rebuild asked while another replica owned the group; it stays in memory", zap.String("group", g.Name), zap.Error(err))
			}
		}
	}
	delete(d.held, g.Name)
	d.wg.Add(1)
	go d.runWorker(w)
}

// maxHeld bounds the rebuilds kept per group owned elsewhere.
const maxHeld = 16

// hold keeps f for a group another replica owns.
func (d *Daemon) hold(group string, f Force) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := append(d.held[group], f)
	if len(h) > maxHeld {
		h = h[len(h)-maxHeld:]
	}
	d.held[group] = h
}

// elsewhereUsing lists the configured groups not run here whose image
// selector names image (by ID or name).
func (d *Daemon) elsewhereUsing(workers map[string]*worker, image string) []string {
	if d.opts.Coordinator == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, g := range d.cfg.Groups {
		if _, mine := workers[g.Name]; !mine && (g.Image.ID == image || g.Image.Name == image) {
			out = append(out, g.Name)
		}
	}
	return out
}

func (d *Daemon) sink(group string) EventSink {
	return EventFunc(func(e Event) {
		d.opts.Metrics.event(e)
		d.opts.Sink.Emit(e)
	})
}

func (d *Daemon) interval() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Controller.Interval.D()
}

// jittered adds up to a tenth of the interval at random, so that groups
// (and replicas) do not call the cloud in step.
func jittered(interval time.Duration) time.Duration {
	return interval + time.Duration(rand.Int64N(int64(interval/10)+1))
}

func (d *Daemon) runWorker(w *worker) {
	defer d.wg.Done()
	defer close(w.done)
	log := d.log.With(zap.String("group", w.group.Name))
	for {
		// Event actions first: a compromised server leaves the traffic
		// before anything else happens to its group.
		for drained := false; !drained; {
			select {
			case act := <-w.urgent:
				act(d.hard)
			default:
				drained = true
			}
		}
		select {
		case d.sem <- struct{}{}:
		case <-d.stop:
			return
		case <-w.quit:
			return
		}
		start := time.Now()
		dec, err := w.rec.Reconcile(d.hard)
		<-d.sem
		d.opts.Metrics.reconciled(w.group.Name, time.Since(start), err)
		halted := w.rec.Stuck()
		w.mu.Lock()
		w.last, w.lastErr, w.lastAt, w.reconciled = dec, err, d.opts.Now(), true
		wasHalted := w.halted != nil
		w.halted = halted
		w.image = d.images.cached(selector(w.group.Image))
		w.mu.Unlock()
		if halted != nil && !wasHalted && !errors.Is(halted, ErrHalted) {
			// A halted rollout announced itself; other reasons to be
			// stuck (a missing image, flavor or pool) are announced here.
			log.Error("the group cannot proceed without a human", zap.Error(halted))
			d.opts.Sink.Emit(Event{Time: d.opts.Now(), Group: w.group.Name, Rollout: w.rec.rollout(), Type: EventHalted, Reason: halted.Error()})
		}

		wait := jittered(d.interval())
		switch {
		case len(w.urgent) > 0:
			wait = 0
		case halted != nil:
			// A halted group waits for a human (or a new image); looking
			// at it as often as at a rollout would only load the cloud.
			wait = max(d.opts.PollInterval, min(wait, 30*time.Second))
		case err != nil || !dec.Status.Converged:
			wait = d.opts.PollInterval
		}
		if dec.RequeueAfter > 0 && dec.RequeueAfter < wait {
			wait = dec.RequeueAfter
		}
		timer := time.NewTimer(wait)
		select {
		case <-d.stop:
			timer.Stop()
			return
		case <-w.quit:
			timer.Stop()
			return
		case <-w.wake:
		case <-w.rec.health.Changes():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// WakeAll asks every group for a reconcile now.
func (d *Daemon) WakeAll() {
	for _, w := range d.snapshot() {
		w.poke()
	}
}

// Reload applies a new configuration: groups that are new start, groups
// that are gone stop (their servers stay as they are), groups whose
// settings changed restart with them. A configuration that cannot be
// loaded is refused by the caller before it gets here; Refused records
// that for status.
func (d *Daemon) Reload(cfg *config.Config) {
	d.mu.Lock()
	old := d.workers
	d.cfg = cfg
	d.loadedAt = d.opts.Now()
	d.reloadErr = nil
	d.images.setTTL(cfg.Controller.Interval.D())
	var retire []*worker
	next := map[string]*worker{}
	for _, g := range cfg.Groups {
		if w, ok := old[g.Name]; ok && sameGroup(w.group, g) {
			next[g.Name] = w
			continue
		}
		if w, ok := old[g.Name]; ok {
			retire = append(retire, w)
		}
	}
	for name, w := range old {
		if !slices.ContainsFunc(cfg.Groups, func(g config.Group) bool { return g.Name == name }) {
			retire = append(retire, w)
		}
	}
	d.workers = next
	for _, w := range retire {
		d.retiring[w] = true
	}
	d.mu.Unlock()
	for _, w := range retire {
		close(w.quit)
		<-w.done
		w.rec.Close()
	}
	d.mu.Lock()
	for _, w := range retire {
		delete(d.retiring, w)
	}
	if d.running {
		for _, g := range cfg.Groups {
			if _, ok := d.workers[g.Name]; !ok && d.mayRun(g.Name) {
				d.startWorker(g)
			}
		}
	}
	d.mu.Unlock()
	d.opts.Metrics.configLoaded(true, d.loadedAt)
	d.log.Info("configuration reloaded", zap.Int("groups", len(cfg.Groups)), zap.Int("restarted_or_stopped", len(retire)))
	d.pokeWatch()
}

// Refused records a configuration that failed to load: the running one
// stays, and status says why.
func (d *Daemon) Refused(err error) {
	d.mu.Lock()
	d.reloadErr = err
	d.mu.Unlock()
	d.opts.Metrics.configLoaded(false, time.Time{})
	d.log.Error("configuration refused; the running one stays", zap.Error(err))
}

func sameGroup(a, b config.Group) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb) && string(a.UserData) == string(b.UserData)
}

// watchImages resolves every distinct image selector once per interval
// (and at once when poked), and wakes the groups whose desired image
// changed: a newly published gold image starts their rollout.
func (d *Daemon) watchImages() {
	defer d.wg.Done()
	for {
		d.watchOnce()
		timer := time.NewTimer(jittered(d.interval()))
		select {
		case <-d.stop:
			timer.Stop()
			return
		case <-d.watchNow:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (d *Daemon) pokeWatch() {
	select {
	case d.watchNow <- struct{}{}:
	default:
	}
}

func (d *Daemon) watchOnce() {
	d.mu.Lock()
	bySelector := map[string][]*worker{}
	selectors := map[string]provisioner.ImageSelector{}
	for _, w := range d.workers {
		sel := selector(w.group.Image)
		k := selectorKey(sel)
		bySelector[k] = append(bySelector[k], w)
		selectors[k] = sel
	}
	d.mu.Unlock()
	var errs []error
	for k, sel := range selectors {
		changed, err := d.images.refresh(d.hard, sel)
		if err != nil {
			if !errors.Is(err, provisioner.ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		if changed {
			for _, w := range bySelector[k] {
				w.poke()
			}
		}
	}
	d.mu.Lock()
	d.watchErr = errors.Join(errs...)
	if d.watchErr == nil {
		d.watchOK = d.opts.Now()
	}
	d.mu.Unlock()
}

// Ready says whether the daemon has a configuration and reaches the
// cloud: the last image watch got its answers.
func (d *Daemon) Ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.cfg == nil:
		return errors.New("no configuration loaded")
	case d.watchOK.IsZero() && d.watchErr == nil:
		return errors.New("the first look at the cloud is still in progress")
	case d.watchErr != nil:
		return fmt.Errorf("the cloud is not reachable: %w", d.watchErr)
	}
	if c := d.opts.Coordinator; c != nil {
		if err := c.Health(); err != nil {
			return fmt.Errorf("replica %s cannot prove what it owns, so it changes nothing: %w", c.ID(), err)
		}
	}
	return nil
}

// ErrStarting is what Dispatch returns for an event that arrives before
// Run has started the groups: not an unknown target, a retry.
var ErrStarting = errors.New("the daemon is starting: its groups are not running yet")

// Dispatch acts on an accepted event (trigger.Dispatcher). It only queues
// work and wakes the groups concerned; it returns an error wrapping
// trigger.ErrUnknownTarget when the event names nothing this daemon
// manages, so that the sender learns it at once.
func (d *Daemon) Dispatch(ctx context.Context, e trigger.Event) error {
	now := d.opts.Now()
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	if !running {
		// The listener opens before the groups' workers start: a group
		// not yet started is not unknown, and an event refused as if it
		// were would be lost. The sender gets a 503 and sends it again.
		return ErrStarting
	}
	d.opts.Metrics.triggered(e.Type)
	switch e.Type {
	case trigger.TypeImagePublished:
		d.images.invalidate()
		d.pokeWatch()
		return nil
	case trigger.TypeSecurityPatch:
		return d.securityPatch(ctx, e, now)
	case trigger.TypeInstanceCompromised:
		return d.compromised(ctx, e, now)
	}
	return fmt.Errorf("event type %q: %w", e.Type, trigger.ErrUnknownTarget)
}

func (d *Daemon) snapshot() map[string]*worker {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]*worker, len(d.workers))
	for k, w := range d.workers {
		out[k] = w
	}
	return out
}

func (d *Daemon) securityPatch(ctx context.Context, e trigger.Event, now time.Time) error {
	workers := d.snapshot()
	chosen := map[string]*worker{}
	var held []string
	for _, name := range e.Groups {
		w, ok := workers[name]
		if !ok && d.configuredElsewhere(name) {
			// Another replica owns it, and acts on the same event sent
			// to it; this one keeps it in case it takes the group over
			// (the owner may die before the event reaches it).
			held = append(held, name)
			continue
		}
		if !ok {
			return fmt.Errorf("group %q: %w", name, trigger.ErrUnknownTarget)
		}
		chosen[name] = w
	}
	if e.Image != "" {
		for name, w := range workers {
			if d.usesImage(w, e.Image) {
				chosen[name] = w
			}
		}
		if len(chosen) == 0 && d.opts.Coordinator == nil {
			// (A replica cannot tell whether the groups of the others use
			// it.)
			return fmt.Errorf("no group uses image %q: %w", e.Image, trigger.ErrUnknownTarget)
		}
	}
	// A patch usually comes with a new gold image: look for it now, so
	// that the rebuild goes to it rather than to the image cached before.
	d.images.invalidate()
	d.pokeWatch()
	reason := fmt.Sprintf("security patch %s (event %s)", e.Reason, e.ID)
	if e.Image != "" {
		held = append(held, d.elsewhereUsing(workers, e.Image)...)
	}
	for _, name := range held {
		d.hold(name, Force{Before: now, Reason: reason})
	}
	// The marks are written before the event is accepted: a daemon
	// killed a moment after its 202 must still find the work on the
	// servers. Until they are all written the sender gets a 503 and sends
	// again; the running daemon rebuilds the servers meanwhile anyway.
	var errs []error
	for _, w := range chosen {
		f := Force{Before: now, Reason: reason}
		w.rec.Force(f)
		if err := w.rec.MarkForRebuild(ctx, f); err != nil {
			errs = append(errs, err)
		}
		w.poke()
	}
	if err := errors.Join(errs...); err != nil {
		d.log.Warn("security patch: not every server could be marked for rebuild; the sender is asked to send the event again", zap.String("event", e.ID), zap.Error(err))
		return fmt.Errorf("mark servers for rebuild: %w", err)
	}
	d.log.Warn("security patch: rebuilding groups", zap.String("event", e.ID), zap.String("reason", e.Reason), zap.Strings("groups", keys(chosen)))
	return nil
}

// usesImage says whether a group's desired image, or an image one of its
// servers runs, is the one named (by ID or name).
func (d *Daemon) usesImage(w *worker, image string) bool {
	if img := d.images.cached(selector(w.group.Image)); img.ID == image || (img.Name != "" && img.Name == image) {
		return true
	}
	if w.group.Image.ID == image || w.group.Image.Name == image {
		return true
	}
	for _, s := range w.rec.Seen() {
		if s.ImageID == image {
			return true
		}
	}
	return false
}

func (d *Daemon) compromised(ctx context.Context, e trigger.Event, now time.Time) error {
	workers := d.snapshot()
	var (
		home *worker
		srv  Seen
	)
	for _, w := range workers {
		for _, s := range w.rec.Seen() {
			if s.ID == e.Server {
				home, srv = w, s
			}
		}
	}
	if home == nil {
		// Not seen yet (a server created moments ago): ask the cloud.
		for _, w := range workers {
			s, ok, err := w.rec.Lookup(ctx, e.Server)
			if err != nil {
				return fmt.Errorf("look for server %s in group %s: %w", e.Server, w.group.Name, err)
			}
			if ok {
				home, srv = w, s
				break
			}
		}
	}
	if home == nil && d.opts.Coordinator != nil {
		// The server may be in a group of another replica, which takes
		// it out; this one rebuilds its own groups' twins of it.
		s, ok, err := d.lookupElsewhere(ctx, e.Server)
		if err != nil {
			return err
		}
		if ok {
			return d.markTwins(ctx, workers, s, e, now)
		}
	}
	if home == nil {
		return fmt.Errorf("server %s is in no group of this daemon: %w", e.Server, trigger.ErrUnknownTarget)
	}
	reason := fmt.Sprintf("%s (event %s)", e.Reason, e.ID)
	// What the event asks is recorded on the servers before it is
	// accepted — the compromise on the server, the rebuild on its twins —
	// so that a daemon killed a moment after its 202 still does it. Until
	// every record is written the sender gets a 503 and sends again.
	if err := home.rec.RecordCompromised(ctx, srv.ID, reason); err != nil {
		return err
	}
	d.queue(home, func(ctx context.Context) {
		if err := home.rec.Quarantine(ctx, srv.ID, reason); err != nil {
			d.log.Error("could not quarantine the compromised server", zap.String("server", srv.ID), zap.Error(err))
		}
	})
	if err := d.markTwins(ctx, workers, srv, e, now); err != nil {
		return err
	}
	d.log.Warn("compromised server: taking it out and rebuilding everything built like it",
		zap.String("server", srv.ID), zap.String("group", home.group.Name), zap.String("image", srv.ImageID), zap.String("revision", srv.Revision), zap.String("event", e.ID))
	return nil
}

// markTwins asks every group of workers to rebuild the servers built like
// srv, a compromised server.
func (d *Daemon) markTwins(ctx context.Context, workers map[string]*worker, srv Seen, e trigger.Event, now time.Time) error {
	reason := fmt.Sprintf("%s (event %s)", e.Reason, e.ID)
	twin := Force{Before: now, ImageID: srv.ImageID, Revision: srv.Revision,
		Reason: fmt.Sprintf("built like compromised server %s (image %s, revision %s): %s", srv.Name, srv.ImageID, srv.Revision, reason)}
	if d.opts.Coordinator != nil {
		for _, name := range d.groupNames() {
			if _, mine := workers[name]; !mine {
				d.hold(name, twin)
			}
		}
	}
	var errs []error
	for _, w := range workers {
		w.rec.Force(twin)
		if err := w.rec.MarkForRebuild(ctx, twin); err != nil {
			errs = append(errs, err)
		}
		w.poke()
	}
	if err := errors.Join(errs...); err != nil {
		d.log.Warn("not every twin of the compromised server could be marked; the sender is asked to send the event again", zap.String("server", srv.ID), zap.Error(err))
		return fmt.Errorf("mark the twins of compromised server %s: %w", srv.ID, err)
	}
	return nil
}

func (d *Daemon) queue(w *worker, act func(context.Context)) {
	select {
	case w.urgent <- act:
	default:
		d.log.Error("too many event actions queued for the group; this one is dropped", zap.String("group", w.group.Name))
	}
	w.poke()
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// GroupStatus is one group as /v1/status shows it.
type GroupStatus struct {
	Group        string            `json:"group"`
	DesiredImage provisioner.Image `json:"desired_image"`
	Revision     string            `json:"revision"`
	Rollout      string            `json:"rollout,omitempty"`
	Status       Status            `json:"status"`
	// InProgress is true while the group is not converged; Progress says
	// how far in words: "5/8 current and serving".
	InProgress    bool      `json:"rollout_in_progress"`
	Progress      string    `json:"progress"`
	Halted        string    `json:"halted,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastReconcile time.Time `json:"last_reconcile,omitempty"`
	// ImageAgeSeconds is how old the desired (newest gold) image was at
	// the last reconcile; ImageStale the alert while it is older than the
	// selector's image.max_age.
	ImageAgeSeconds float64 `json:"image_age_seconds,omitempty"`
	ImageStale      string  `json:"image_stale,omitempty"`
	// Owner is the replica that reconciles the group, when several
	// share the groups: this one, another, or "" when none holds it.
	Owner string `json:"owner,omitempty"`
}

// DaemonStatus is the whole of /v1/status.
type DaemonStatus struct {
	Config struct {
		Path     string    `json:"path"`
		LoadedAt time.Time `json:"loaded_at"`
		// Refused says why the last reload was refused; the configuration
		// loaded at LoadedAt is the one running.
		Refused string `json:"refused,omitempty"`
	} `json:"config"`
	Ready  string        `json:"ready"`
	Groups []GroupStatus `json:"groups"`
	// Replica is set when several replicas share the groups.
	Replica *ReplicaStatus `json:"replica,omitempty"`
}

// Status reports every group.
func (d *Daemon) Status() DaemonStatus {
	var out DaemonStatus
	d.mu.Lock()
	out.Config.Path, out.Config.LoadedAt = d.cfg.Path, d.loadedAt
	if d.reloadErr != nil {
		out.Config.Refused = d.reloadErr.Error()
	}
	d.mu.Unlock()
	out.Ready = "ok"
	if err := d.Ready(); err != nil {
		out.Ready = err.Error()
	}
	workers := d.snapshot()
	if d.opts.Coordinator != nil {
		return d.coordinatedStatus(out, workers)
	}
	for _, name := range keys(workers) {
		out.Groups = append(out.Groups, workers[name].status())
	}
	return out
}

func (w *worker) status() GroupStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := GroupStatus{Group: w.group.Name, DesiredImage: w.image, Revision: Revision(w.group), Status: w.last.Status,
		Rollout: w.rec.rollout(), LastReconcile: w.lastAt}
	st.Status.Desired = w.group.Count
	st.InProgress = !w.reconciled || !w.last.Status.Converged
	st.Progress = fmt.Sprintf("%d/%d current and serving", w.last.Status.Available, w.group.Count)
	if !w.reconciled {
		st.Progress = "not reconciled yet"
	}
	if w.halted != nil {
		st.Halted = w.halted.Error()
	}
	if w.lastErr != nil {
		st.LastError = w.lastErr.Error()
	}
	f := w.rec.Freshness()
	st.ImageAgeSeconds, st.ImageStale = f.Age.Seconds(), f.Stale
	return st
}

// imageCache holds the resolution of each image selector, refreshed by
// the image watch, so that a reconcile of a group at rest asks Glance
// nothing and one Glance list per selector serves every group using it.
type imageCache struct {
	cloud provisioner.Cloud
	mu    sync.Mutex
	ttl   time.Duration
	byKey map[string]cachedImage
}

type cachedImage struct {
	img provisioner.Image
	at  time.Time
}

func newImageCache(cloud provisioner.Cloud) *imageCache {
	return &imageCache{cloud: cloud, byKey: map[string]cachedImage{}}
}

func (c *imageCache) setTTL(d time.Duration) {
	c.mu.Lock()
	c.ttl = d
	c.mu.Unlock()
}

func selectorKey(sel provisioner.ImageSelector) string {
	b, _ := json.Marshal(sel)
	return string(b)
}

// resolve answers from the cache while it is fresh, else asks the cloud.
func (c *imageCache) resolve(ctx context.Context, sel provisioner.ImageSelector) (provisioner.Image, error) {
	k := selectorKey(sel)
	c.mu.Lock()
	e, ok := c.byKey[k]
	fresh := ok && time.Since(e.at) < c.ttl
	c.mu.Unlock()
	if fresh {
		return e.img, nil
	}
	_, err := c.refresh(ctx, sel)
	if err != nil {
		return provisioner.Image{}, err
	}
	return c.cached(sel), nil
}

// refresh resolves sel now and says whether the answer changed.
func (c *imageCache) refresh(ctx context.Context, sel provisioner.ImageSelector) (bool, error) {
	img, err := c.cloud.Images.ResolveImage(ctx, sel)
	if err != nil {
		return false, err
	}
	k := selectorKey(sel)
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.byKey[k]
	c.byKey[k] = cachedImage{img: img, at: time.Now()}
	return !ok || prev.img.ID != img.ID, nil
}

func (c *imageCache) cached(sel provisioner.ImageSelector) provisioner.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[selectorKey(sel)].img
}

// invalidate makes the next resolve of every selector ask the cloud.
func (c *imageCache) invalidate() {
	c.mu.Lock()
	for k, e := range c.byKey {
		e.at = time.Time{}
		c.byKey[k] = e
	}
	c.mu.Unlock()
}
