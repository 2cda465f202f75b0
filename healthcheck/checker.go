package healthcheck

import (
	"context"
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
// Watch that repeats a target keeps its history.
func (t Target) sameProbing(u Target) bool {
	return t.Address == u.Address && t.Prober == u.Prober && t.Policy == u.Policy && t.Since.Equal(u.Since)
}

// Stats count probes since the Checker started.
type Stats struct {
	Probes, Passes, Failures uint64
}

// Checker probes a set of targets, each on its own schedule, and keeps a
// verdict for each. Safe for concurrent use.
type Checker struct {
	log     *zap.Logger
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
}

// NewChecker returns a Checker with no targets.
func NewChecker(log *zap.Logger) *Checker {
	if log == nil {
		log = zap.NewNop()
	}
	return &Checker{log: log, changes: make(chan struct{}, 1), targets: map[string]*watch{}}
}

// Watch sets the complete set of targets. New targets are probed at once
// and then every Interval; targets absent from the slice stop and are
// forgotten; a target whose address, prober, policy or start changed starts
// over from Unknown.
func (c *Checker) Watch(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	keep := make(map[string]bool, len(targets))
	for _, t := range targets {
		keep[t.ID] = true
		if w, ok := c.targets[t.ID]; ok {
			if w.target.sameProbing(t) {
				continue
			}
			w.cancel()
		}
		c.start(t)
	}
	for id, w := range c.targets {
		if !keep[id] {
			w.cancel()
			delete(c.targets, id)
		}
	}
}

// start runs with c.mu held.
func (c *Checker) start(t Target) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{target: t, cancel: cancel}
	c.targets[t.ID] = w
	c.wg.Add(1)
	go c.loop(ctx, w)
}

func (c *Checker) loop(ctx context.Context, w *watch) {
	defer c.wg.Done()
	t := w.target
	timeout := t.Policy.Timeout
	if timeout <= 0 {
		timeout = probeTimeout
	}
	interval := max(t.Policy.Interval, time.Millisecond)
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
		c.record(w, time.Now(), err)
		timer.Reset(max(0, interval-time.Since(started)))
	}
}

func (c *Checker) record(w *watch, now time.Time, err error) {
	c.probes.Add(1)
	if err == nil {
		c.passes.Add(1)
	} else {
		c.failures.Add(1)
	}
	c.mu.Lock()
	if c.targets[w.target.ID] != w {
		c.mu.Unlock()
		return // replaced or removed while probing
	}
	before := w.obs.State
	w.obs = w.obs.Record(now, err, w.target.Policy, w.target.Since)
	obs := w.obs
	c.mu.Unlock()

	fields := []zap.Field{zap.String("server", w.target.ID), zap.String("address", w.target.Address), zap.Stringer("state", obs.State)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if obs.State == before {
		c.log.Debug("health probe", fields...)
		return
	}
	c.log.Info("health changed", fields...)
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// Observe returns what is known of a target.
func (c *Checker) Observe(id string) (Observation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.targets[id]
	if !ok {
		return Observation{}, false
	}
	return w.obs, true
}

// Changes is signalled whenever a target's state changes. Signals are
// coalesced: one pending signal stands for any number of changes.
func (c *Checker) Changes() <-chan struct{} { return c.changes }

// Stats returns the probe counters.
func (c *Checker) Stats() Stats {
	return Stats{Probes: c.probes.Load(), Passes: c.passes.Load(), Failures: c.failures.Load()}
}

// Close stops all probing and waits for the probes in flight.
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
