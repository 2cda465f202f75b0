package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// What events ask of one group, outside the plan: marking servers for
// replacement (MetaRebuild) and taking a compromised server out of the
// traffic (MetaCompromised). Both write their record on the servers before
// the event is accepted, so that a restart still knows.

// Seen is a server as the last reconcile of its group saw it.
type Seen struct {
	ID, Name, ImageID, Revision string
}

// Seen returns the servers the last reconcile listed.
func (r *GroupReconciler) Seen() []Seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Seen(nil), r.seen...)
}

func (r *GroupReconciler) remember(servers []provisioner.Server) {
	seen := make([]Seen, 0, len(servers))
	for _, s := range servers {
		seen = append(seen, Seen{ID: s.ID, Name: s.Name, ImageID: s.ImageID, Revision: s.Metadata[MetaRevision]})
	}
	r.mu.Lock()
	r.seen = seen
	r.mu.Unlock()
}

// Lookup lists the group's servers now and returns the one with that ID.
func (r *GroupReconciler) Lookup(ctx context.Context, id string) (Seen, bool, error) {
	servers, err := r.cloud.Servers.ListServers(ctx, GroupTag(r.group.Name))
	if err != nil {
		return Seen{}, false, err
	}
	r.remember(servers)
	for _, s := range r.Seen() {
		if s.ID == id {
			return s, true, nil
		}
	}
	return Seen{}, false, nil
}

// MarkForRebuild records f on every server of the group it designates
// (MetaRebuild) and keeps it in memory for the servers that cannot take
// the record now (Nova refuses metadata while a server builds).
func (r *GroupReconciler) MarkForRebuild(ctx context.Context, f plan.Force) error {
	r.Force(f)
	servers, err := r.cloud.Servers.ListServers(ctx, GroupTag(r.group.Name))
	if err != nil {
		return fmt.Errorf("group %s: list servers to mark for rebuild: %w", r.group.Name, err)
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	var marks []provisioner.Server
	for _, s := range servers {
		p := planServer(s)
		// A compromised server is on its way out already (and may be
		// being deleted as this runs): it needs no mark.
		// A mark already there is written again only to make it urgent.
		if s.Gone() || p.RebuildMark != "" && (p.RebuildUrgent || !f.Urgent) || p.Compromised != "" || !f.Designates(p) || !acceptsMetadata(s.Status, s.TaskState) {
			continue
		}
		marks = append(marks, s)
	}
	_ = parallel(marks, r.opts.Parallelism, func(s provisioner.Server) error {
		md := map[string]string{MetaRebuild: truncate(f.Reason, maxValue)}
		if f.Urgent {
			md[MetaRebuildUrgent] = "true"
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil && !errors.Is(err, provisioner.ErrNotFound) {
			mu.Lock()
			errs = append(errs, fmt.Errorf("mark server %s (%s) for rebuild: %w", s.Name, s.ID, err))
			mu.Unlock()
		}
		return nil
	})
	r.log.Info("marked servers for rebuild", zap.Int("servers", len(marks)), zap.String("reason", f.Reason))
	return errors.Join(errs...)
}

// RecordCompromised writes on a server that it is compromised, which the
// plan then deletes like a failed one; Quarantine also takes it out of the
// traffic at once.
func (r *GroupReconciler) RecordCompromised(ctx context.Context, id, reason string) error {
	if err := r.cloud.Servers.SetServerMetadata(ctx, id, map[string]string{MetaCompromised: truncate(reason, maxValue)}); err != nil {
		return fmt.Errorf("group %s: record that server %s is compromised: %w", r.group.Name, id, err)
	}
	return nil
}

// Quarantine takes a compromised server out of the group's traffic at
// once — its member is deleted, not drained — and records it on the
// server (unless recorded already), which the plan then deletes like a
// failed one. A server already gone, or being deleted, is done: a round of
// the group saw the record first, and took it out of the traffic before
// anything else (see quarantineFirst).
func (r *GroupReconciler) Quarantine(ctx context.Context, id, reason string) error {
	servers, err := r.cloud.Servers.ListServers(ctx, GroupTag(r.group.Name))
	if err != nil {
		return fmt.Errorf("group %s: list servers to quarantine %s: %w", r.group.Name, id, err)
	}
	var target *provisioner.Server
	for i := range servers {
		if servers[i].ID == id {
			target = &servers[i]
		}
	}
	if target == nil || target.Gone() || target.TaskState == provisioner.TaskDeleting {
		r.log.Info("compromised server already on its way out: nothing to quarantine", zap.String("server", id))
		return nil
	}
	if r.traffic != nil {
		states, err := r.traffic.observe(ctx, servers)
		if err != nil {
			return fmt.Errorf("read %s to take compromised server %s out: %w", r.traffic, target.Name, err)
		}
		c := plan.Classified{Server: planServer(*target)}
		c.Traffic = states[id]
		if c.Traffic != plan.TrafficNone {
			if err := r.traffic.remove(ctx, c); err != nil {
				return fmt.Errorf("take compromised server %s out of %s: %w", target.Name, r.traffic, err)
			}
			r.log.Warn("compromised server taken out of traffic", zap.String("server", id), zap.String("name", target.Name), zap.Stringer("traffic", r.traffic))
			r.emit(Event{Type: EventTrafficRemove, Server: id, Name: target.Name, Reason: reason, Message: "removed from " + r.traffic.String() + " at once: compromised"})
		}
	}
	if target.Metadata[MetaCompromised] != "" {
		return nil
	}
	if err := r.cloud.Servers.SetServerMetadata(ctx, id, map[string]string{MetaCompromised: truncate(reason, maxValue)}); err != nil {
		return fmt.Errorf("record that server %s is compromised: %w", target.Name, err)
	}
	return nil
}
