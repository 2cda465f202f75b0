package controller

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

// deleteServers records the phase on each server, then asks for its
// delete. A server whose phase cannot be written is not deleted: a restart
// must always find the record of a decided delete. With backups on, a
// server is deleted only once its snapshot is active; until then its
// delete waits (the plan decides it again next time).
func (r *GroupReconciler) deleteServers(ctx context.Context, deletes []plan.Delete, ready <-chan struct{}, now time.Time) error {
	var snapped, volSnapped atomic.Bool
	err := parallel(deletes, r.opts.Parallelism, func(d plan.Delete) error {
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
		if d.Server.Kind == plan.KindOld {
			replacedBy = r.ledger.deleted(d.Server.ID, d.Server.Name, d.Server.ImageID, now)
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

func (r *GroupReconciler) deleteOne(ctx context.Context, d plan.Delete, ready <-chan struct{}, now time.Time) error {
	if !d.Resume && acceptsMetadata(d.Server.Status, d.Server.TaskState) {
		md := map[string]string{
			MetaPhase:   plan.PhaseDeleting,
			MetaPhaseAt: formatTime(now),
			MetaReason:  truncate(d.Reason, maxValue),
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, d.Server.ID, md); err != nil {
			return fmt.Errorf("record the delete of server %s (%s): %w", d.Server.Name, d.Server.ID, err)
		}
	}
	<-ready
	if r.traffic != nil && d.Server.Traffic != plan.TrafficNone {
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
func (r *GroupReconciler) drainServers(ctx context.Context, drains []plan.Drain, now time.Time) error {
	return parallel(drains, r.opts.Parallelism, func(d plan.Drain) error {
		if !d.Resume {
			md := map[string]string{
				MetaPhase:     plan.PhaseDraining,
				MetaPhaseAt:   formatTime(now),
				MetaReason:    truncate(d.Reason, maxValue),
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
			if d.Server.Kind == plan.KindOld {
				replacedBy = r.ledger.deleted(d.Server.ID, d.Server.Name, d.Server.ImageID, now)
			}
			r.log.Info("draining server", zap.String("server", d.Server.ID), zap.String("name", d.Server.Name),
				zap.Time("until", d.Until), zap.String("reason", d.Reason), zap.String("replaced_by", replacedBy))
			r.emit(Event{Type: EventDrain, Server: d.Server.ID, Name: d.Server.Name, Image: d.Server.ImageID,
				Reason: d.Reason, ReplacedBy: replacedBy, Message: "draining until " + formatTime(d.Until)})
		}
		return nil
	})
}

// addTraffic puts ready servers into the traffic. They count as available
// once a later observation shows them serving.
func (r *GroupReconciler) addTraffic(ctx context.Context, servers []plan.Classified) error {
	return parallel(servers, r.opts.Parallelism, func(c plan.Classified) error {
		if err := r.traffic.add(ctx, c); err != nil {
			return fmt.Errorf("add server %s (%s) to %s: %w", c.Name, c.ID, r.traffic, err)
		}
		r.log.Info("added to traffic", zap.String("server", c.ID), zap.String("name", c.Name), zap.Stringer("traffic", r.traffic))
		r.emit(Event{Type: EventTrafficAdd, Server: c.ID, Name: c.Name, Image: c.ImageID, Message: "added to " + r.traffic.String()})
		return nil
	})
}
