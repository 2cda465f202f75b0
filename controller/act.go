package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// act carries out a decision. What the decision asks to record for later
// rounds (a halt, the rollout's progress) is written first, on every
// server that can take it; a failed server whose failure could not be
// recorded is not deleted this round. Then the steps go in parallel where
// nothing orders them, so a round costs the slowest chain of requests, not
// their sum: the creates do not wait on the deletes (the plan counted the
// servers to delete as still there), and the record that new servers
// served is written while the deletes are recorded — a delete is sent
// only once that record is written.
func (r *GroupReconciler) act(ctx context.Context, w world, t plan.Target, dec plan.Decision, now time.Time) error {
	key := rolloutKey(w.image.ID, r.revision)
	if dec.Halt != "" {
		r.recordHalt(ctx, w.servers, w.image, dec.Halt, dec)
	}
	rec := w.rejection
	switch {
	case dec.Reject != "":
		rec = r.recordRejection(ctx, w, dec, now)
	case !rec.isZero():
		r.spreadRejection(ctx, w.servers, rec)
	}
	if !dec.RecordProgress && !dec.Progress.IsZero() {
		r.spreadProgress(ctx, w.servers, key, dec.Progress)
	}
	if dec.RecordProgress && !r.recordProgress(ctx, w.servers, key, dec.Progress) {
		// A failure counted this round but not recorded is counted again
		// next round: its server must still be there, as it is.
		fresh := func(c plan.Classified) bool {
			return !slices.Contains(t.Progress.Counted, c.Boot()) && slices.Contains(dec.Progress.Counted, c.Boot())
		}
		dec.Deletes = slices.DeleteFunc(dec.Deletes, func(x plan.Delete) bool { return fresh(x.Server) })
		dec.Reimages = slices.DeleteFunc(dec.Reimages, func(x plan.Reimage) bool { return fresh(x.Server) })
	}

	// A compromised server leaves the traffic before anything else
	// happens to its group. The daemon writes the mark before it accepts
	// the event and queues its quarantine for the group's next round, but
	// a round under way (or one woken by the cloud's notice of the mark)
	// may see the mark first, and so does a daemon restarted after the 202.
	quarantineErr := r.quarantineFirst(ctx, dec.Deletes)
	for _, x := range dec.Deletes {
		if x.Server.Protected != "" {
			r.log.Warn("deleting a protected server: it is compromised, and a compromise overrides a protection",
				zap.String("server", x.Server.ID), zap.String("protected", x.Server.Protected), zap.String("compromised", x.Server.Compromised))
		}
	}
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
			createErr = r.createServers(ctx, dec.Creates, w.image, createRecord(dec.Previous, rec, w.record.hold, w.record.staged, key, dec.Progress), now)
		}
	}()
	errs := []error{quarantineErr}
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
	if err := r.reimageServers(ctx, dec.Reimages, w.servers, w.image, dec.Previous, now); err != nil {
		errs = append(errs, err)
	}
	if r.group.Stateful != nil {
		started := r.startHandovers(ctx, dec.Handovers, now)
		halt, err := r.advanceHandovers(ctx, append(slices.Clone(w.inflight), started...), dec, w.servers, w.image.ID, now)
		if err != nil {
			errs = append(errs, err)
		}
		if halt != "" && t.Halted == "" && dec.Halt == "" && dec.Reject == "" {
			// The rollout failed: a rollback rather than a halt when the
			// group asks for one and has an image to go back to.
			if to, why := plan.Undo(t, dec.Servers, halt); why == "" {
				rej := dec
				rej.Reject, rej.RollbackTo = halt, to
				r.recordRejection(ctx, w, rej, now)
			} else {
				r.recordHalt(ctx, w.servers, w.image, why, dec)
			}
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
	return errors.Join(errs...)
}

// quarantineFirst takes the compromised servers among deletes out of the
// traffic now — deleted, not drained — and notes it in deletes, so that
// their delete does not do it again. One that cannot be taken out keeps
// its place in the traffic; its delete tries again, and is not sent
// until it succeeds.
func (r *GroupReconciler) quarantineFirst(ctx context.Context, deletes []plan.Delete) error {
	if r.traffic == nil {
		return nil
	}
	var out []int
	for i, d := range deletes {
		if d.Server.Compromised != "" && d.Server.Traffic != plan.TrafficNone {
			out = append(out, i)
		}
	}
	return parallel(out, r.opts.Parallelism, func(i int) error {
		c := deletes[i].Server
		if err := r.traffic.remove(ctx, c); err != nil {
			return fmt.Errorf("take compromised server %s (%s) out of %s: %w", c.Name, c.ID, r.traffic, err)
		}
		deletes[i].Server.Traffic = plan.TrafficNone
		r.log.Warn("compromised server taken out of traffic", zap.String("server", c.ID), zap.String("name", c.Name), zap.Stringer("traffic", r.traffic))
		r.emit(Event{Type: EventTrafficRemove, Server: c.ID, Name: c.Name, Reason: "compromised: " + c.Compromised,
			Message: "removed from " + r.traffic.String() + " at once: compromised"})
		return nil
	})
}

// recordOnServers writes md on the given servers, and reports whether
// at least one took it.
func (r *GroupReconciler) recordOnServers(ctx context.Context, servers []provisioner.Server, md map[string]string, what string) bool {
	return len(r.recordOn(ctx, servers, md, what)) > 0
}

// recordOn writes md on the given servers and returns those that took it.
func (r *GroupReconciler) recordOn(ctx context.Context, servers []provisioner.Server, md map[string]string, what string) map[string]bool {
	var mu sync.Mutex
	took := map[string]bool{}
	_ = parallel(servers, r.opts.Parallelism, func(s provisioner.Server) error {
		if err := r.cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			r.log.Warn("could not record on a server", zap.String("record", what), zap.String("server", s.ID), zap.Error(err))
			return nil
		}
		mu.Lock()
		took[s.ID] = true
		mu.Unlock()
		return nil
	})
	return took
}

// holders are the servers that take the group's records.
func holders(servers []provisioner.Server) []provisioner.Server {
	var out []provisioner.Server
	for _, s := range servers {
		if holdsRecords(s) {
			out = append(out, s)
		}
	}
	return out
}

// recordProgress writes the rollout's progress record, and keeps it in
// memory for when no server can hold one. A failure counted goes on every
// server that takes records, as a halt does; a cleared record is written
// only where one is. It reports whether the record is safe: written on a
// server, or there is none to write it on.
func (r *GroupReconciler) recordProgress(ctx context.Context, servers []provisioner.Server, key string, p plan.Progress) bool {
	r.mu.Lock()
	r.progress = keyedProgress{key: key, progress: p}
	r.mu.Unlock()
	to := holders(servers)
	switch {
	case len(to) == 0:
		return true
	case p.IsZero():
		to = slices.DeleteFunc(to, func(s provisioner.Server) bool { return s.Metadata[MetaProgress] == "" })
		if len(to) == 0 {
			return true
		}
	}
	return r.recordOnServers(ctx, to, progressMetadata(key, p), "progress")
}

// recordHalt records the halt on every server that can take it (in
// memory too, for a group with none), and says so loudly.
func (r *GroupReconciler) recordHalt(ctx context.Context, servers []provisioner.Server, img provisioner.Image, reason string, dec plan.Decision) {
	key := rolloutKey(img.ID, r.revision)
	recorded := r.recordOnServers(ctx, holders(servers), haltMetadata(key, reason), "halt")
	r.mu.Lock()
	r.halted = haltState{key: key, reason: reason, recorded: recorded}
	r.mu.Unlock()
	serving := 0
	for _, c := range dec.Servers {
		if c.Kind == plan.KindOld && c.Available {
			serving++
		}
	}
	keep := fmt.Sprintf("%d old servers keep serving.", serving)
	if serving == 0 {
		keep = "No old server is left serving: the group keeps what serves of the new ones."
	}
	what := fmt.Sprintf("rollout of group %s to image %s (%s), revision %s, halted: %s. %s To go on: %s.",
		r.group.Name, img.Name, img.ID, r.revision, reason, keep, haltAdvice(r.group.Name, reason))
	r.log.Error("rollout halted", zap.String("image", img.ID), zap.String("revision", r.revision), zap.String("reason", reason),
		zap.Int("old_serving", serving))
	r.emit(Event{Type: EventHalted, Image: img.ID, Reason: reason, Message: what})
}

// recordRejection records that the rollout to the desired image failed and
// the group goes back to dec.RollbackTo, on every server that can take it
// (in memory too, for a group with none), and says so loudly.
func (r *GroupReconciler) recordRejection(ctx context.Context, w world, dec plan.Decision, now time.Time) rejection {
	j := rejection{rejected: plan.Ref{ImageID: w.image.ID, Revision: r.revision}, to: dec.RollbackTo.ImageID, at: now, reason: dec.Reject}
	took := r.recordOn(ctx, holders(w.servers), rejectionMetadata(j), "rollback")
	r.mu.Lock()
	r.rejected, r.rejectedRecorded, r.rejectedOn = j, len(took) > 0, took
	r.mu.Unlock()
	what := fmt.Sprintf("rollout of group %s to image %s (%s), revision %s, failed: %s. Rolling back to image %s, the one the group ran before, "+
		"with the same surge, health gate, drain and budget as any rollout; image %s is rejected for this group and revision until a newer image appears "+
		"(`phoenix resume --group %s` lifts the rejection).",
		r.group.Name, w.image.Name, w.image.ID, r.revision, dec.Reject, j.to, w.image.ID, r.group.Name)
	r.log.Error("rollout rolled back", zap.String("image", w.image.ID), zap.String("revision", r.revision),
		zap.String("back_to", j.to), zap.String("reason", dec.Reject))
	r.emit(Event{Type: EventRolledBack, Image: w.image.ID, Reason: dec.Reject, Message: what})
	return j
}

// spreadRejection writes the rollback on record on the servers that can
// take it and lack it (created before it was, or a write that failed), so
// that it outlives the servers it was first written on.
func (r *GroupReconciler) spreadRejection(ctx context.Context, servers []provisioner.Server, j rejection) {
	md := rejectionMetadata(j)
	to := slices.DeleteFunc(holders(servers), func(s provisioner.Server) bool { return s.Metadata[MetaRejected] == md[MetaRejected] })
	if len(to) > 0 {
		r.recordOnServers(ctx, to, md, "rollback")
	}
}

// spreadProgress writes the rollout's failure record on the servers that
// can take it and lack it, or hold one that counts fewer failures: a
// record only on servers that leave (a sick server replaced, in a group
// of one the only one) would leave with them, and the failures of an
// image that cannot stay healthy would be counted afresh, heal churning
// on it for good.
func (r *GroupReconciler) spreadProgress(ctx context.Context, servers []provisioner.Server, key string, p plan.Progress) {
	to := slices.DeleteFunc(holders(servers), func(s provisioner.Server) bool {
		q, ok := parseProgress(s.Metadata, key)
		return ok && q.Failures >= p.Failures
	})
	if len(to) > 0 {
		r.recordOnServers(ctx, to, progressMetadata(key, p), "progress")
	}
}

// createRecord is what every new server records besides its spec: what it
// replaced, the rollback, the hold and the promotion on record, and the failure record of
// the rollout to key it is part of.
func createRecord(previous plan.Ref, j rejection, h hold, staged plan.PromotedImage, key string, p plan.Progress) map[string]string {
	md := map[string]string{}
	if !staged.At.IsZero() {
		maps.Copy(md, promotedMetadata(staged))
	}
	if !h.isZero() {
		maps.Copy(md, holdMetadata(h))
	}
	if !previous.IsZero() {
		md[MetaPreviousImage], md[MetaPreviousRevision] = previous.ImageID, previous.Revision
	}
	if !j.isZero() {
		maps.Copy(md, rejectionMetadata(j))
	}
	if !p.IsZero() {
		maps.Copy(md, progressMetadata(key, p))
	}
	return md
}

// recordReady writes, once, when each new server first served: a server
// that served is never mistaken later for a boot that missed its deadline,
// and a canary's bake runs from it.
func (r *GroupReconciler) recordReady(ctx context.Context, d plan.Decision, now time.Time) {
	var todo []plan.Classified
	for _, c := range d.Servers {
		// A stateful server serves only with its data volume.
		serves := c.Ready && (r.group.Stateful == nil || len(c.StatefulVolumes) > 0)
		if c.Kind == plan.KindCurrent && serves && !c.Served() && !c.Unlisted && acceptsMetadata(c.Status, c.TaskState) {
			todo = append(todo, c)
		}
	}
	_ = parallel(todo, r.opts.Parallelism, func(c plan.Classified) error {
		md := map[string]string{MetaReadyAt: formatTime(now)}
		if c.Phase == plan.PhaseRebuilding {
			md[MetaPhase], md[MetaPhaseAt], md[MetaReason] = "", "", ""
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, c.ID, md); err != nil {
			r.log.Debug("could not record that a server is ready", zap.String("server", c.ID), zap.Error(err))
		}
		return nil
	})
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
