package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// GroupResult is how one group's rebuild ended.
type GroupResult struct {
	Summary
	Converged bool
	// Err says why the group did not converge: stuck (ErrStuck), the
	// deadline, or the last error seen.
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
	var stuck error
	err := r.Run(ctx, func(d Decision, err error) bool {
		if err == nil && d.Status.Converged {
			return true
		}
		if err == nil && d.Status.Paused {
			stuck = fmt.Errorf("%w: the canary of group %s served its bake; the rest of the rollout waits for `phoenix resume --group %s`", ErrPaused, g.Name, g.Name)
			return true
		}
		// A stuck group still waits for its new servers to settle, so
		// that failed ones are deleted before the run ends, and for its
		// data volumes to finish moving or come back.
		// A halted group of strategy rebuild keeps a server whose rebuild
		// failed (it is one of the group's, with the addresses the
		// operator relies on): nothing more will happen to it.
		stuck = r.Stuck()
		failedSettled := d.Status.Failed == 0 || d.Status.Halted && len(d.Deletes) == 0 && len(d.Reimages) == 0
		settled := d.Status.Booting == 0 && failedSettled && d.Status.Deleting == 0 && d.Status.Draining == 0 && d.Status.Handovers == 0
		return stuck != nil && settled
	})
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
// acting: what `phoenix plan` shows. Each ACTIVE server is probed once with
// the group's health check — a snapshot, not the thresholds a rollout
// waits for — so a server that is failing right now shows as unhealthy.
func Preview(ctx context.Context, cloud provisioner.Cloud, g config.Group, opts Options) (provisioner.Image, Decision, error) {
	opts.defaults()
	cloud = cloud.Complete()
	servers, err := cloud.Servers.ListServers(ctx, GroupTag(g.Name))
	if err != nil {
		return provisioner.Image{}, Decision{}, err
	}
	img, err := cloud.Images.ResolveImage(ctx, selector(g.Image))
	if err != nil {
		return provisioner.Image{}, Decision{}, fmt.Errorf("resolve the image of group %s: %w", g.Name, err)
	}
	r := &GroupReconciler{group: g, revision: Revision(g), opts: opts}
	var live []provisioner.Server
	for _, s := range servers {
		if !s.Gone() {
			live = append(live, s)
		}
	}
	in := probeOnce(ctx, g, live, opts.Now())
	tr, err := newTraffic(g, cloud, zap.NewNop())
	if err != nil {
		return img, Decision{}, err
	}
	if tr != nil {
		states, err := tr.observe(ctx, live)
		if err != nil {
			return img, Decision{}, fmt.Errorf("group %s: read %s: %w", g.Name, tr, err)
		}
		for i := range in {
			in[i].Traffic = states[in[i].ID]
		}
	}
	t := r.target(img)
	if g.Stateful != nil {
		// Read only: the marks a reconcile makes at first contact are not
		// made here.
		vols, err := cloud.Volumes.VolumesWith(ctx, map[string]string{PropGroup: g.Name})
		if err != nil {
			return img, Decision{}, fmt.Errorf("list the data volumes of group %s: %w", g.Name, err)
		}
		held, inflight, free := statefulView(vols)
		t.Stateful, t.InFlight, t.FreeVolumes = true, inflight, free
		for i := range in {
			in[i].StatefulVolumes = held[in[i].ID]
		}
	}
	key := haltKey(img.ID, t.Revision)
	for _, s := range live {
		if s.Metadata[MetaHalted] == key {
			t.Halted = cmp.Or(s.Metadata[MetaHaltReason], "halted")
		}
		t.CanaryPromoted = t.CanaryPromoted || s.Metadata[MetaCanaryPassed] == key
	}
	return img, Plan(t, in, opts.Now()), nil
}

// probeOnce turns servers into plan input with one health probe each.
func probeOnce(ctx context.Context, g config.Group, servers []provisioner.Server, now time.Time) []Server {
	prober := healthProber(g.Health)
	in := make([]Server, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		in[i] = planServer(s)
		if s.Status != provisioner.StatusActive {
			continue
		}
		addr := address(s, g.Networks)
		if prober == nil || addr == "" {
			if prober == nil {
				in[i].Health, in[i].HealthySince = healthcheck.Healthy, s.LaunchedAt
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, max(g.Health.Timeout.D(), 100*time.Millisecond))
			defer cancel()
			if err := prober.Probe(pctx, addr); err != nil {
				in[i].Health, in[i].HealthError = healthcheck.Unhealthy, err.Error()
				return
			}
			// Counted as healthy since long enough to pass min_ready: the
			// preview shows the state now, not a rollout's patience.
			in[i].Health, in[i].HealthySince = healthcheck.Healthy, now.Add(-g.Rollout.MinReady.D())
		}()
	}
	wg.Wait()
	return in
}
