package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

// maxParked bounds the rebuilds kept per group owned elsewhere.
const maxParked = 16

// parkElsewhere parks f for every configured group not run here.
func (d *Daemon) parkElsewhere(ctx context.Context, workers map[string]*worker, f plan.Force) error {
	var errs []error
	for _, name := range d.groupNames() {
		if _, mine := workers[name]; !mine {
			errs = append(errs, d.park(ctx, name, f))
		}
	}
	return errors.Join(errs...)
}

// mark records f on the servers of each worker's group it designates,
// and wakes the group.
func mark(ctx context.Context, workers map[string]*worker, f plan.Force) error {
	// The groups are marked at once: the sender waits for the last mark,
	// and one group's list and writes take seconds on a busy cloud.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, w := range workers {
		wg.Go(func() {
			w.rec.Force(f)
			if err := w.rec.MarkForRebuild(ctx, f); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			w.poke()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// park keeps f for a group another replica owns: in memory, for when
// this replica takes the group over, and in etcd, for whichever replica
// owns it next (its owner may be dead and come back without the event).
// An error means etcd did not take it: the sender is asked to send again.
func (d *Daemon) park(ctx context.Context, group string, f plan.Force) error {
	d.mu.Lock()
	h := append(d.parked[group], f)
	if len(h) > maxParked {
		h = h[len(h)-maxParked:]
	}
	d.parked[group] = h
	d.mu.Unlock()
	c := d.opts.Coordinator
	if c == nil {
		return nil
	}
	value, err := json.Marshal(f)
	if err != nil {
		return err
	}
	// The same rebuild asked twice (a sender's retry) is one key.
	sum := sha256.Sum256(value)
	return c.Park(ctx, group, hex.EncodeToString(sum[:12]), value)
}

// takeParked records on the group's servers the rebuilds parked for it in
// etcd by the replicas that received events while another owned it, and
// drops each once recorded. Those marks are the work's record from then on.
func (d *Daemon) takeParked(ctx context.Context, w *worker) {
	c := d.opts.Coordinator
	if c == nil {
		return
	}
	parked, err := c.Parked(ctx, w.group.Name)
	if err != nil {
		d.log.Warn("could not read the rebuilds parked for the group; the next takeover reads them again", zap.String("group", w.group.Name), zap.Error(err))
		return
	}
	for key, value := range parked {
		var f plan.Force
		if err := json.Unmarshal(value, &f); err != nil {
			d.log.Warn("a rebuild parked in etcd does not read; it is dropped", zap.String("group", w.group.Name), zap.String("key", key), zap.Error(err))
			_ = c.Unpark(ctx, w.group.Name, key)
			continue
		}
		w.rec.Force(f)
		if err := w.rec.MarkForRebuild(ctx, f); err != nil {
			d.log.Warn("could not record on the servers a rebuild parked in etcd; it stays parked", zap.String("group", w.group.Name), zap.Error(err))
			continue
		}
		if err := c.Unpark(ctx, w.group.Name, key); err != nil {
			d.log.Warn("a rebuild parked in etcd is recorded on the servers but stays parked", zap.String("group", w.group.Name), zap.Error(err))
		}
	}
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

// ErrStarting is what Dispatch returns for an event that arrives before
// Run has started the groups: not an unknown target, a retry.
var ErrStarting = errors.New("the daemon is starting: its groups are not running yet")

// Dispatch acts on an accepted event (trigger.Dispatcher). It only queues
// work and wakes the groups concerned; it returns an error wrapping
// trigger.ErrUnknownTarget when the event names nothing this daemon
// manages, so that the sender learns it at once.
func (d *Daemon) Dispatch(ctx context.Context, e trigger.Event) (err error) {
	// What an event asks to rebuild was built before it was signed, not
	// before it arrived: a replay of a captured event, accepted again by
	// a restarted daemon (the replay memory is in memory), designates
	// only servers that predate the original.
	before := e.At()
	if before.IsZero() {
		before = d.opts.Now()
	}
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	if !running {
		// The listener opens before the groups' workers start: a group
		// not yet started is not unknown, and an event refused as if it
		// were would be lost. The sender gets a 503 and sends it again.
		return ErrStarting
	}
	defer func() {
		// Accepted is what answered 202; the rest count as refused.
		if err == nil {
			d.opts.Metrics.triggered(e.Type)
		}
	}()
	switch e.Type {
	case trigger.TypeImagePublished:
		d.images.invalidate()
		d.pokeWatch()
		return nil
	case trigger.TypeSecurityPatch:
		return d.securityPatch(ctx, e, before)
	case trigger.TypeInstanceCompromised:
		return d.compromised(ctx, e, before)
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

func (d *Daemon) securityPatch(ctx context.Context, e trigger.Event, before time.Time) error {
	if len(e.Servers) > 0 {
		return d.patchServers(ctx, e, before)
	}
	workers := d.snapshot()
	chosen := map[string]*worker{}
	var parked []string
	for _, name := range e.Groups {
		w, ok := workers[name]
		if !ok && d.configuredElsewhere(name) {
			// Another replica owns it, and acts on the same event sent
			// to it; this one keeps it in case it takes the group over
			// (the owner may die before the event reaches it).
			parked = append(parked, name)
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
		parked = append(parked, d.elsewhereUsing(workers, e.Image)...)
	}
	for _, name := range parked {
		if err := d.park(ctx, name, plan.Force{Before: before, Reason: reason, Urgent: e.Urgent}); err != nil {
			return err
		}
	}
	// The marks are written before the event is accepted: a daemon
	// killed a moment after its 202 must still find the work on the
	// servers. Until they are all written the sender gets a 503 and sends
	// again; the running daemon rebuilds the servers meanwhile anyway.
	if err := mark(ctx, chosen, plan.Force{Before: before, Reason: reason, Urgent: e.Urgent}); err != nil {
		d.log.Warn("security patch: not every server could be marked for rebuild; the sender is asked to send the event again", zap.String("event", e.ID), zap.Error(err))
		return fmt.Errorf("mark servers for rebuild: %w", err)
	}
	d.log.Warn("security patch: rebuilding groups", zap.String("event", e.ID), zap.String("reason", e.Reason), zap.Strings("groups", keys(chosen)), zap.Bool("urgent", e.Urgent))
	return nil
}

// patchServers asks for the replacement of exactly the servers a patch
// names, in whichever groups they are. A server in no group of this
// daemon is refused, unless other replicas own groups (it may be in one
// of theirs: the rebuild is parked for those groups, where it designates
// that server only).
func (d *Daemon) patchServers(ctx context.Context, e trigger.Event, before time.Time) error {
	workers := d.snapshot()
	f := plan.Force{Before: before, Servers: e.Servers, Urgent: e.Urgent, Reason: fmt.Sprintf("security patch %s (event %s)", e.Reason, e.ID)}
	chosen := map[string]*worker{}
	var missing []string
	for _, id := range e.Servers {
		var home *worker
		for _, w := range workers {
			if slices.ContainsFunc(w.rec.Seen(), func(s controller.Seen) bool { return s.ID == id }) {
				home = w
			}
		}
		for _, w := range workers {
			if home != nil {
				break
			}
			_, ok, err := w.rec.Lookup(ctx, id)
			if err != nil {
				return fmt.Errorf("look for server %s in group %s: %w", id, w.group.Name, err)
			}
			if ok {
				home = w
			}
		}
		if home == nil {
			missing = append(missing, id)
			continue
		}
		chosen[home.group.Name] = home
	}
	if len(missing) > 0 && d.opts.Coordinator == nil {
		return fmt.Errorf("servers %s are in no group of this daemon: %w", strings.Join(missing, ", "), trigger.ErrUnknownTarget)
	}
	if len(missing) > 0 {
		if err := d.parkElsewhere(ctx, workers, f); err != nil {
			return err
		}
	}
	if err := mark(ctx, chosen, f); err != nil {
		d.log.Warn("security patch: not every server named could be marked for rebuild; the sender is asked to send the event again", zap.String("event", e.ID), zap.Error(err))
		return fmt.Errorf("mark servers for rebuild: %w", err)
	}
	d.log.Warn("security patch: rebuilding the servers named", zap.String("event", e.ID), zap.String("reason", e.Reason), zap.Strings("servers", e.Servers), zap.Bool("urgent", e.Urgent))
	return nil
}

// usesImage says whether a group's desired image, or an image one of its
// servers runs, is the one named (by ID or name).
func (d *Daemon) usesImage(w *worker, image string) bool {
	if img := d.images.cached(controller.Selector(w.group.Image)); img.ID == image || (img.Name != "" && img.Name == image) {
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

func (d *Daemon) compromised(ctx context.Context, e trigger.Event, before time.Time) error {
	workers := d.snapshot()
	var (
		home *worker
		srv  controller.Seen
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
			return d.markTwins(ctx, workers, s, e, before)
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
	if err := d.markTwins(ctx, workers, srv, e, before); err != nil {
		return err
	}
	d.log.Warn("compromised server: taking it out and rebuilding everything built like it",
		zap.String("server", srv.ID), zap.String("group", home.group.Name), zap.String("image", srv.ImageID), zap.String("revision", srv.Revision), zap.String("event", e.ID))
	return nil
}

// markTwins asks every group of workers to rebuild the servers built like
// srv, a compromised server.
func (d *Daemon) markTwins(ctx context.Context, workers map[string]*worker, srv controller.Seen, e trigger.Event, before time.Time) error {
	reason := fmt.Sprintf("%s (event %s)", e.Reason, e.ID)
	// A compromise never waits for a hold, a window or a blocker.
	twin := plan.Force{Before: before, ImageID: srv.ImageID, Revision: srv.Revision, Urgent: true,
		Reason: fmt.Sprintf("built like compromised server %s (image %s, revision %s): %s", srv.Name, srv.ImageID, srv.Revision, reason)}
	if d.opts.Coordinator != nil {
		if err := d.parkElsewhere(ctx, workers, twin); err != nil {
			return err
		}
	}
	if err := mark(ctx, workers, twin); err != nil {
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
