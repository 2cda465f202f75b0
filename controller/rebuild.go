package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// GroupResult is how one group's rebuild ended.
type GroupResult struct {
	Summary
	Converged bool
	// Err says why the group did not converge: stuck (ErrStuck), paused
	// (ErrPaused), the deadline, or the last error seen.
	Err error
}

// Rebuild drives every group to convergence, each group by its own
// reconciler, all at once. It returns when every group has converged or is
// stuck, or when ctx ends (the caller's deadline); groups that had not
// converged by then carry the reason in their result. Nothing is left half
// done that a later run would not resume: the state is on the servers.
func Rebuild(ctx context.Context, cloud provisioner.Cloud, groups []config.Group, sink EventSink, log *zap.Logger, opts Options) []GroupResult {
	opts.defaults()
	results := make([]GroupResult, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = rebuildGroup(ctx, cloud, g, sink, log, opts)
		}()
	}
	wg.Wait()
	return results
}

func rebuildGroup(ctx context.Context, cloud provisioner.Cloud, g config.Group, sink EventSink, log *zap.Logger, opts Options) GroupResult {
	r := NewGroupReconciler(g, cloud, sink, log, opts)
	defer r.Close()
	for _, f := range opts.Forces {
		if err := r.MarkForRebuild(ctx, f); err != nil {
			return GroupResult{Summary: r.Summary(), Err: err}
		}
	}
	var stuck error
	started := opts.Now()
	err := r.Run(ctx, Loop{Wake: opts.Wakes.of(g.Name), After: func(d plan.Decision, err error) (time.Duration, bool) {
		if err == nil && d.Status.Converged {
			if img, why := r.Rejected(); img != "" && r.RejectedSince(started) {
				// Back where the group was: the rollout this run set out
				// to do failed.
				stuck = fmt.Errorf("%w: the rollout of group %s to image %s failed (%s) and was rolled back; the group runs image %s again",
					ErrRolledBack, g.Name, img, why, r.DesiredImage().ID)
			}
			return 0, true
		}
		if err == nil && d.Status.Paused {
			stuck = fmt.Errorf("%w: the canary of group %s served its bake; the rest of the rollout waits for `phoenix resume --group %s`", ErrPaused, g.Name, g.Name)
			return 0, true
		}
		// A stuck group still waits for its new servers to settle, so
		// that failed ones are deleted before the run ends, and for its
		// data volumes to finish moving or come back. A halted group of
		// strategy rebuild keeps a server whose rebuild failed (it is one
		// of the group's, with the addresses the operator relies on):
		// nothing more will happen to it.
		stuck = r.Stuck()
		failedSettled := d.Status.Failed == 0 || d.Status.Halted && len(d.Deletes) == 0 && len(d.Reimages) == 0
		settled := d.Status.Booting == 0 && failedSettled && d.Status.Deleting == 0 && d.Status.Draining == 0 && d.Status.Handovers == 0
		healing := d.Status.Unhealthy > 0 && !d.Status.HealBlocked
		if err == nil && stuck == nil && d.Status.Deferred > 0 && settled && !healing && d.Status.Old == 0 && len(d.Creates) == 0 &&
			opts.Now().Sub(started) > 2*settle(g) {
			// What was under way is done, heal included (the health of
			// every server is known); the rest waits for steering.
			stuck = fmt.Errorf("%w: %d servers of group %s wait to be replaced: %s", ErrDeferred, d.Status.Deferred, g.Name, d.Status.Steering)
		}
		return opts.PollInterval, stuck != nil && settled
	}})
	res := GroupResult{Summary: r.Summary()}
	switch {
	case stuck != nil:
		res.Err = stuck
	case err == nil:
		res.Converged = true
	default:
		reason := err
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			reason = fmt.Errorf("stopped before converging: %w", err)
			if last := res.LastError; last != nil && !errors.Is(last, context.DeadlineExceeded) && !errors.Is(last, context.Canceled) {
				reason = fmt.Errorf("%w; last error: %w", reason, last)
			}
		}
		res.Err = reason
	}
	return res
}

// Preview classifies a group's servers against its desired state without
// acting: what `phoenix plan` shows. It observes the group as a reconcile
// does (reading only), and probes each ACTIVE server once with the group's
// health check — a snapshot, not the thresholds a rollout waits for — so
// a server that is failing right now shows as unhealthy.
func Preview(ctx context.Context, cloud provisioner.Cloud, g config.Group, opts Options) (provisioner.Image, plan.Decision, error) {
	r := NewGroupReconciler(g, cloud, nil, nil, opts)
	defer r.Close()
	w, err := r.observe(ctx, lookToPreview)
	if err != nil {
		return w.image, plan.Decision{}, err
	}
	now := r.opts.Now()
	t := r.target(w, now)
	return w.image, plan.Plan(t, r.probeOnce(ctx, w, t, now), now), nil
}

// probeOnce turns the observed servers into plan input with one health
// probe each. A stopped server counts as sick for long enough to be
// healed: the preview shows what a reconcile would come to.
func (r *GroupReconciler) probeOnce(ctx context.Context, w world, t plan.Target, now time.Time) []plan.Server {
	g := r.group
	prober := healthProber(g.Health)
	in := make([]plan.Server, len(w.servers))
	var wg sync.WaitGroup
	for i, s := range w.servers {
		in[i] = planServer(s)
		in[i].Traffic, in[i].StatefulVolumes = w.traffic[s.ID], w.held[s.ID]
		in[i].UnhealthySince = now.Add(-t.HealAfter)
		if s.Status != provisioner.StatusActive {
			continue
		}
		addr := address(s, g.Networks)
		if prober == nil || addr == "" {
			if prober == nil {
				in[i].Health, in[i].HealthySince = plan.Healthy, s.LaunchedAt
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, max(g.Health.Timeout.D(), 100*time.Millisecond))
			defer cancel()
			if err := prober.Probe(pctx, addr); err != nil {
				in[i].Health, in[i].HealthError = plan.Unhealthy, err.Error()
				return
			}
			// Counted as healthy since long enough to pass min_ready: the
			// preview shows the state now, not a rollout's patience.
			in[i].Health, in[i].HealthySince = plan.Healthy, now.Add(-g.Rollout.MinReady.D())
		}()
	}
	wg.Wait()
	return in
}
