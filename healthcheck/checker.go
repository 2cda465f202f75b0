package healthcheck

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Target is one server to probe.
type Target struct {
	// ID is the server's ID.
	ID      string
	Address string
	Prober  Prober
	Policy  Policy
	// Since is when the server became ACTIVE; the grace period counts
	// from here.
	Since time.Time
}

// sameProbing reports whether two targets are probed the same way, so a
// Watch that repeats a target keeps its history. Since takes part: a server
// rebuilt in place keeps its ID and address but starts again, and its old
// verdict must not carry over.
func (t Target) sameProbing(u Target) bool {
	return t.Address == u.Address && sameProber(t.Prober, u.Prober) && t.Policy == u.Policy && t.Since.Equal(u.Since)
}

// sameProber compares with ==, which panics when both hold the same
// non-comparable type; such probers are compared by value instead.
func sameProber(a, b Prober) (same bool) {
	defer func() {
		if recover() != nil {
			same = reflect.DeepEqual(a, b)
		}
	}()
	return a == b
}

// Stats count probes since the Checker started.
type Stats struct {
	Probes, Passes, Failures uint64
}

// Checker probes a set of targets, each on its own schedule, and keeps a
// verdict for each. Safe for concurrent use.
type Checker struct {
	log     *zap.Logger
	now     func() time.Time
	changes chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	targets map[string]*watch
	closed  bool

	probes, passes, failures atomic.Uint64
}

type watch struct {
	target Target
	cancel context.CancelFunc
	obs    Observation
	// risen is set once the target was healthy: from then on it is
	// probed every Interval, not every RiseInterval.
	risen bool
	// probed is closed once the first probe is recorded.
	probed chan struct{}
}

// Option tunes a Checker.
type Option func(*Checker)

// WithClock dates the observations by now instead of time.Now (probes
// are still paced by real time): the clock of the controller that reads
// them.
func WithClock(now func() time.Time) Option {
	return func(c *Checker) { c.now = now }
}

// NewChecker returns a Checker with no targets.
func NewChecker(log *zap.Logger, opts ...Option) *Checker {
	if log == nil {
		log = zap.NewNop()
	}
	c := &Checker{log: log, now: time.Now, changes: make(chan struct{}, 1), targets: map[string]*watch{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Watch sets the complete set of targets. New targets are probed at once
// and then every Interval; targets absent from the slice stop and are
// forgotten; a target whose address, prober, policy or Since changed starts
// over from Unknown. A target without a Prober is not watched; of two
// targets with one ID the later wins. After Close, Watch does nothing.
func (c *Checker) Watch(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	keep := make(map[string]Target, len(targets))
	for _, t := range targets {
		if t.Prober != nil {
			keep[t.ID] = t
		}
	}
	for _, t := range keep {
		if w, ok := c.targets[t.ID]; ok {
			if w.target.sameProbing(t) {
				continue
			}
			w.cancel()
		}
		c.start(t)
	}
	for id, w := range c.targets {
		if _, ok := keep[id]; !ok {
			w.cancel()
			delete(c.targets, id)
		}
	}
}

// start runs with c.mu held.
func (c *Checker) start(t Target) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{target: t, cancel: cancel, probed: make(chan struct{})}
	c.targets[t.ID] = w
	c.wg.Add(1)
	go c.loop(ctx, w)
}

func (c *Checker) loop(ctx context.Context, w *watch) {
	defer c.wg.Done()
	t := w.target
	timeout := t.Policy.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	interval := t.Policy.Interval
	if interval <= 0 {
		interval = defaultInterval
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		started := time.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := t.Prober.Probe(pctx, t.Address)
		cancel()
		if ctx.Err() != nil {
			return
		}
		next := interval
		if risen := c.record(w, c.now(), err); !risen && t.Policy.RiseInterval > 0 && t.Policy.RiseInterval < interval {
			next = t.Policy.RiseInterval
		}
		timer.Reset(max(0, next-time.Since(started)))
	}
}

// record folds one result into w's observation, unless w was replaced or
// removed while it probed; it logs the result and signals a state change.
// It reports whether the target has been healthy since it was watched.
func (c *Checker) record(w *watch, now time.Time, err error) (risen bool) {
	c.probes.Add(1)
	if err == nil {
		c.passes.Add(1)
	} else {
		c.failures.Add(1)
	}
	c.mu.Lock()
	if c.targets[w.target.ID] != w {
		c.mu.Unlock()
		return true
	}
	before := w.obs.State
	w.obs = w.obs.Record(now, err, w.target.Policy, w.target.Since)
	select {
	case <-w.probed:
	default:
		close(w.probed)
	}
	obs := w.obs
	if obs.State == Healthy {
		w.risen = true
	}
	risen = w.risen
	c.mu.Unlock()

	changed := obs.State != before
	if changed {
		select {
		case c.changes <- struct{}{}:
		default: // a signal is pending already
		}
	}
	debug := c.log.Check(zap.DebugLevel, "health probe")
	if debug == nil && !changed {
		return risen
	}
	fields := []zap.Field{
		zap.String("server", w.target.ID),
		zap.String("address", w.target.Address),
		zap.Stringer("state", obs.State),
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if debug != nil {
		debug.Write(append(fields, zap.Int("passes", obs.ConsecutivePass), zap.Int("failures", obs.ConsecutiveFail))...)
	}
	if changed {
		c.log.Info("health changed", append(fields, zap.Stringer("was", before))...)
	}
	return risen
}

// Observe returns what is known of a watched target; false when the ID is
// not watched.
func (c *Checker) Observe(id string) (Observation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.targets[id]
	if !ok {
		return Observation{}, false
	}
	return w.obs, true
}

// WaitProbed waits, for at most max, until each of ids that is watched
// has had its first probe recorded: a caller that has just started
// watching a server learns at once what its first probe says, rather than
// a round later.
func (c *Checker) WaitProbed(ctx context.Context, ids []string, max time.Duration) {
	var pending []<-chan struct{}
	c.mu.Lock()
	for _, id := range ids {
		if w, ok := c.targets[id]; ok {
			pending = append(pending, w.probed)
		}
	}
	c.mu.Unlock()
	timer := time.NewTimer(max)
	defer timer.Stop()
	for _, p := range pending {
		select {
		case <-p:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Changes is signalled whenever a probe changes a target's state (not when
// Watch restarts or drops a target: the caller knows). Signals are
// coalesced: one pending signal stands for any number of changes, so a
// reader should Observe every target it cares about when woken.
func (c *Checker) Changes() <-chan struct{} { return c.changes }

// Stats returns the probe counters.
func (c *Checker) Stats() Stats {
	return Stats{Probes: c.probes.Load(), Passes: c.passes.Load(), Failures: c.failures.Load()}
}

// Close stops all probing, cancels the probes in flight and waits for
// their goroutines to end. It may be called more than once.
func (c *Checker) Close() {
	c.mu.Lock()
	c.closed = true
	for id, w := range c.targets {
		w.cancel()
		delete(c.targets, id)
	}
	c.mu.Unlock()
	c.wg.Wait()
}
