package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Options tune a Daemon.
type Options struct {
	Log  *zap.Logger
	Sink controller.EventSink
	// Metrics receives what the daemon does; nil records nothing.
	Metrics *Metrics
	// PollInterval is how often a group that has not converged is
	// reconciled (sooner when health changes). Default 2s.
	PollInterval time.Duration
	// StopGrace is how long the step in flight may take once a stop is
	// asked for, before its requests are cancelled. Default 30s.
	StopGrace time.Duration
	// Reconciler options every group starts from (backoffs, parallelism).
	Reconciler controller.Options
	Now        func() time.Time
	// Placement, when set, says where a group placed over several
	// locations lives: its locations (each connected and fenced by the
	// caller) and failover_after; false for a group in the one cloud.
	Placement func(g config.Group) ([]controller.Location, time.Duration, bool)
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
	opts  Options
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

	// started is the configuration the daemon started with: what its
	// restart-only settings still are. restart lists those the running
	// configuration changed. Both under mu.
	started *config.Config
	restart []string
	// changed names what the last reload applied changed (reloadChanges);
	// under mu.
	changed []string

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
	// parked are the rebuilds events asked of groups another replica
	// owned when they came: if this replica takes such a group over, it
	// does them too (a plan.Force only designates servers built before its
	// event, so one the owner already did designates nothing).
	parked map[string][]plan.Force
	// notes is the listener on the cloud's message bus, nil without one.
	notes NotificationSource
}

// New prepares a daemon for cfg; Run starts it.
func New(cloud provisioner.Cloud, cfg *config.Config, opts Options) *Daemon {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Sink == nil {
		opts.Sink = controller.EventFunc(func(controller.Event) {})
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
		started:  cfg,
		loadedAt: opts.Now(),
		workers:  map[string]*worker{},
		retiring: map[*worker]bool{},
		parked:   map[string][]plan.Force{},
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

// groupReconciler is what a worker runs: a group in one place
// (controller.GroupReconciler), or placed over several (controller.Placed).
type groupReconciler interface {
	Run(ctx context.Context, l controller.Loop) error
	Close()
	Logger() *zap.Logger
	Rollout() string
	Force(f plan.Force)
	MarkForRebuild(ctx context.Context, f plan.Force) error
	RecordCompromised(ctx context.Context, id, reason string) error
	Quarantine(ctx context.Context, id, reason string) error
	Lookup(ctx context.Context, id string) (controller.Seen, bool, error)
	Seen() []controller.Seen
	Stuck() error
	Rejected() (image, reason string)
	DesiredImage() provisioner.Image
	Freshness() controller.Freshness
	ProbeStats() healthcheck.Stats
}

// placed is a group placed over several locations.
type placed interface {
	Locations() []controller.LocationStatus
}

// worker owns one group: its reconciler and the loop that runs it.
type worker struct {
	group  config.Group
	rec    groupReconciler
	wake   chan struct{}
	quit   chan struct{} // closed to retire the worker (reload)
	done   chan struct{}
	urgent chan func(context.Context) // event actions, run before the next reconcile

	mu         sync.Mutex
	last       plan.Decision
	lastErr    error
	lastAt     time.Time
	lastOK     time.Time // the end of the last round without error
	reconciled bool
	image      provisioner.Image
	halted     error
	// stage says which newer image waits for a tag another group
	// promotes, and why ("" when none does).
	stage string
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
	d.opts.Metrics.groupsLoaded(d.groupNames())

	d.wg.Add(1)
	go d.watchImages()
	d.runListener(ctx)
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
	opts.Stages = controller.Stages(d.cfg.Groups, g)
	if opts.Now == nil {
		opts.Now = d.opts.Now
	}
	var rec groupReconciler
	if locs, after, ok := d.placement(g); ok {
		opts.ResolveImage = nil // each location resolves its own image
		if c := d.opts.Coordinator; c != nil {
			for i := range locs {
				connect := locs[i].Connect
				locs[i].Connect = func(ctx context.Context) (provisioner.Cloud, error) {
					cloud, err := connect(ctx)
					if err != nil {
						return cloud, err
					}
					return c.Fence(g.Name, cloud), nil
				}
			}
		}
		rec = controller.NewPlaced(g, locs, after, d.sink(), d.log, opts)
	} else {
		rec = controller.NewGroupReconciler(g, cloud, d.sink(), d.log, opts)
	}
	w := &worker{
		group:  g,
		rec:    rec,
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		urgent: make(chan func(context.Context), 64),
	}
	d.workers[g.Name] = w
	for _, f := range d.parked[g.Name] {
		// Taken over: the rebuilds events asked while another replica
		// owned the group are recorded on its servers first thing (and
		// kept in memory even if that fails).
		w.urgent <- func(ctx context.Context) {
			if err := w.rec.MarkForRebuild(ctx, f); err != nil {
				d.log.Warn("could not record on the servers a rebuild asked while another replica owned the group; it stays in memory", zap.String("group", g.Name), zap.Error(err))
			}
		}
	}
	delete(d.parked, g.Name)
	if d.opts.Coordinator != nil {
		// And those parked in etcd by the replicas that received events
		// while another owned the group, or none did.
		w.urgent <- func(ctx context.Context) { d.takeParked(ctx, w) }
	}
	d.wg.Add(1)
	go d.runWorker(w)
}

func (d *Daemon) placement(g config.Group) ([]controller.Location, time.Duration, bool) {
	if d.opts.Placement == nil {
		return nil, 0, false
	}
	return d.opts.Placement(g)
}

func (d *Daemon) sink() controller.EventSink {
	return controller.EventFunc(func(e controller.Event) {
		d.opts.Metrics.event(e)
		d.opts.Sink.Emit(e)
		if e.Type == controller.EventImagePromoted || e.Type == controller.EventImageWithdrawn {
			// The stages that require the tag take the image (or leave
			// it) at once, not at the next turn of the image watch.
			d.pokeWatch()
		}
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
	log := w.rec.Logger() // the group, and the rollout under way
	until := make(chan struct{})
	go func() {
		select {
		case <-d.stop:
		case <-w.quit:
		}
		close(until)
	}()
	var start time.Time
	_ = w.rec.Run(d.hard, controller.Loop{
		Until: until,
		Wake:  w.wake,
		Before: func() bool {
			// controller.Event actions first: a compromised server leaves the
			// traffic before anything else happens to its group.
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
			case <-until:
				return false
			}
			start = time.Now()
			return true
		},
		After: func(dec plan.Decision, err error) (time.Duration, bool) {
			<-d.sem
			if errors.Is(err, controller.ErrAwaitingStage) {
				d.opts.Metrics.reconciled(w.group.Name, time.Since(start), nil)
			} else {
				d.opts.Metrics.reconciled(w.group.Name, time.Since(start), err)
			}
			halted := w.rec.Stuck()
			w.mu.Lock()
			w.last, w.lastErr, w.lastAt, w.reconciled = dec, err, d.opts.Now(), true
			if err == nil {
				w.lastOK = w.lastAt
			}
			wasHalted := w.halted != nil
			w.halted = halted
			w.image = w.rec.DesiredImage()
			if w.image.ID == "" {
				w.image = d.images.cached(controller.Selector(w.group.Image))
			}
			w.mu.Unlock()
			if halted != nil && !wasHalted && !errors.Is(halted, controller.ErrHalted) {
				// A halted rollout announced itself; other reasons to be
				// stuck (a missing image, flavor or pool) are announced here.
				log.Error("the group cannot proceed without a human", zap.Error(halted))
				d.opts.Sink.Emit(controller.Event{Time: d.opts.Now(), Group: w.group.Name, Rollout: w.rec.Rollout(),
					Type: controller.EventHalted, Reason: halted.Error()})
			}
			wait := jittered(d.interval())
			switch {
			case len(w.urgent) > 0:
				wait = 0
			case halted != nil:
				// A halted group waits for a human (or a new image);
				// looking at it as often as at a rollout would only load
				// the cloud.
				wait = max(d.opts.PollInterval, min(wait, 30*time.Second))
			case errors.Is(err, controller.ErrAwaitingStage):
				// No image carries the stage's tag yet: the promotion
				// pokes the image watch, which wakes the group.
				wait = max(d.opts.PollInterval, min(wait, 30*time.Second))
			case err == nil && waitsForSteering(dec):
				// Replacements wait for a hold, a blocker or a window, and
				// nothing is under way: looking every poll for hours would
				// only load the cloud. (A window's opening comes sooner,
				// through the plan's own requeue.)
				wait = max(d.opts.PollInterval, min(wait, 30*time.Second))
			case err != nil || !dec.Status.Converged:
				wait = d.opts.PollInterval
			}
			return wait, false
		},
	})
}

// waitsForSteering says whether a group's rollout only waits for steering:
// replacements deferred, and nothing under way or to be done this round.
func waitsForSteering(d plan.Decision) bool {
	st := d.Status
	return st.Deferred > 0 && st.Booting == 0 && st.Deleting == 0 && st.Draining == 0 && st.Old == 0 && st.Failed == 0 &&
		st.Handovers == 0 && len(d.Creates) == 0 && len(d.Deletes) == 0 && len(d.Drains) == 0 && len(d.Reimages) == 0
}

// WakeAll asks every group for a reconcile now.
func (d *Daemon) WakeAll() {
	for _, w := range d.snapshot() {
		w.poke()
	}
}

// Reload applies a new configuration: groups that are new start, groups
// that are gone stop (their servers stay as they are), groups whose
// settings changed restart with them. Settings read only at start keep
// their running values and are named (restartOnly). A configuration that
// cannot be loaded is refused by the caller before it gets here; Refused
// records that for status.
func (d *Daemon) Reload(cfg *config.Config) {
	d.mu.Lock()
	d.restart = restartNeeded(d.started, cfg)
	if len(d.restart) > 0 {
		d.log.Warn("configuration reloaded, but these settings changed and apply only after a restart; the running values stay",
			zap.Strings("restart_needed", d.restart))
	}
	old := d.workers
	d.changed = reloadChanges(d.cfg, cfg)
	changed := d.changed
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
	d.opts.Metrics.groupsLoaded(d.groupNames())
	d.log.Info("configuration reloaded", zap.Int("groups", len(cfg.Groups)), zap.Int("restarted_or_stopped", len(retire)),
		zap.Strings("changed", changed))
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
