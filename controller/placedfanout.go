package controller

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// What the daemon asks of a group, answered for a placed group by its
// locations' reconcilers: events go to every location (or to the one that
// has the server), reports come from the first location that has one.

// each runs f on every connected location's reconciler.
func (p *Placed) each(f func(*GroupReconciler)) {
	p.mu.Lock()
	var recs []*GroupReconciler
	for _, l := range p.locs {
		if l.rec != nil {
			recs = append(recs, l.rec)
		}
	}
	p.mu.Unlock()
	for _, r := range recs {
		f(r)
	}
}

// first returns f's answer for the first location whose answer ok accepts.
func first[T any](p *Placed, f func(*GroupReconciler) T, ok func(T) bool) T {
	var out T
	found := false
	p.each(func(r *GroupReconciler) {
		if v := f(r); !found && ok(v) {
			out, found = v, true
		}
	})
	return out
}

// Close stops every location's health probes.
func (p *Placed) Close() {
	p.mu.Lock()
	p.closed = true
	for _, l := range p.locs {
		if l.stopped != nil {
			close(l.stopped)
			l.stopped = nil
		}
	}
	p.mu.Unlock()
	p.each((*GroupReconciler).Close)
}

// HealthChanges signals a change in any location's health.
func (p *Placed) HealthChanges() <-chan struct{} { return p.changes }

// ProbeStats sums the locations' probe counts.
func (p *Placed) ProbeStats() healthcheck.Stats {
	var s healthcheck.Stats
	p.each(func(r *GroupReconciler) {
		x := r.ProbeStats()
		s.Probes, s.Passes, s.Failures = s.Probes+x.Probes, s.Passes+x.Passes, s.Failures+x.Failures
	})
	return s
}

// Force asks every location to rebuild the servers f designates.
func (p *Placed) Force(f plan.Force) { p.each(func(r *GroupReconciler) { r.Force(f) }) }

// Logger is the group's logger.
func (p *Placed) Logger() *zap.Logger { return p.log }

// Rollout names the rollout under way in the first location that has one.
func (p *Placed) Rollout() string {
	return first(p, (*GroupReconciler).Rollout, func(s string) bool { return s != "" })
}

// Rejected is the first location's rejected image.
func (p *Placed) Rejected() (image, reason string) {
	type rej struct{ image, reason string }
	r := first(p, func(r *GroupReconciler) rej { i, why := r.Rejected(); return rej{i, why} }, func(r rej) bool { return r.image != "" })
	return r.image, r.reason
}

// DesiredImage is the first location's desired image (each location
// resolves its own).
func (p *Placed) DesiredImage() provisioner.Image {
	return first(p, (*GroupReconciler).DesiredImage, func(i provisioner.Image) bool { return i.ID != "" })
}

// Stuck is the first location's reason to be stuck.
func (p *Placed) Stuck() error {
	return first(p, (*GroupReconciler).Stuck, func(err error) bool { return err != nil })
}

// Freshness is the first location's image freshness.
func (p *Placed) Freshness() Freshness {
	return first(p, (*GroupReconciler).Freshness, func(f Freshness) bool { return f.Image.ID != "" })
}

// Seen lists the servers the last round listed in every location.
func (p *Placed) Seen() []Seen {
	var out []Seen
	p.each(func(r *GroupReconciler) { out = append(out, r.Seen()...) })
	return out
}

// Lookup finds a server of the group in any location.
func (p *Placed) Lookup(ctx context.Context, id string) (Seen, bool, error) {
	rec, s, err := p.find(ctx, id)
	return s, rec != nil, err
}

// find is the location reconciler that has server id; a location that
// cannot be listed is an error only if no location has it.
func (p *Placed) find(ctx context.Context, id string) (*GroupReconciler, Seen, error) {
	var errs []error
	var found *GroupReconciler
	var seen Seen
	p.each(func(r *GroupReconciler) {
		if found != nil {
			return
		}
		s, ok, err := r.Lookup(ctx, id)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			found, seen = r, s
		}
	})
	if found != nil {
		return found, seen, nil
	}
	return nil, Seen{}, errors.Join(errs...)
}

// MarkForRebuild marks the servers f designates in every location; a
// location that cannot be reached keeps it in memory.
func (p *Placed) MarkForRebuild(ctx context.Context, f plan.Force) error {
	var errs []error
	p.each(func(r *GroupReconciler) {
		if err := r.MarkForRebuild(ctx, f); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// RecordCompromised marks server id compromised where it lives.
func (p *Placed) RecordCompromised(ctx context.Context, id, reason string) error {
	r, _, err := p.find(ctx, id)
	if r == nil {
		return fmt.Errorf("group %s: server %s is in none of its locations: %w", p.group.Name, id, errors.Join(err, provisioner.ErrNotFound))
	}
	return r.RecordCompromised(ctx, id, reason)
}

// Quarantine takes server id out of its location's traffic at once.
func (p *Placed) Quarantine(ctx context.Context, id, reason string) error {
	r, _, err := p.find(ctx, id)
	if r == nil {
		if err != nil {
			return err
		}
		return nil // gone already
	}
	return r.Quarantine(ctx, id, reason)
}
