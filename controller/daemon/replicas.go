package daemon

import (
	"context"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Coordinator shares the groups among replicas of the daemon (package
// coordination, through etcd): each group is reconciled by the one
// replica that owns it, on a cloud that refuses every change while that
// replica cannot prove it still does.
type Coordinator interface {
	// ID names this replica.
	ID() string
	// Run shares the groups until ctx ends, calling apply with the
	// groups this replica owns whenever that changes. apply returns once
	// the workers of the groups it no longer lists have stopped.
	Run(ctx context.Context, groups func() []string, apply func(owned []string)) error
	// Fence wraps the cloud one group's worker uses.
	Fence(group string, cloud provisioner.Cloud) provisioner.Cloud
	// Owner is the replica holding the group at the last look ("" none).
	Owner(group string) string
	// Health says why this replica cannot prove what it owns now.
	Health() error
	// Replicas is how many replicas were alive at the last look.
	Replicas() int
	// Park keeps a rebuild asked of a group another replica owns where
	// the group's next owner finds it (Parked); Unpark drops it once its
	// marks are on the servers.
	Park(ctx context.Context, group, key string, value []byte) error
	Parked(ctx context.Context, group string) (map[string][]byte, error)
	Unpark(ctx context.Context, group, key string) error
}

// ReplicaStatus is this replica in /v1/status.
type ReplicaStatus struct {
	ID       string `json:"id"`
	Replicas int    `json:"replicas_alive"`
	// Owned lists the groups this replica reconciles.
	Owned []string `json:"owned"`
	// Fenced says why this replica changes nothing at the moment (its
	// lease is not known alive, or etcd does not answer); "" when it may.
	Fenced string `json:"fenced,omitempty"`
}

// mayRun says whether this daemon runs a worker for the group. Call with
// d.mu held.
func (d *Daemon) mayRun(group string) bool {
	return d.owned == nil || d.owned[group]
}

// groupNames lists the configured groups, for the coordinator.
func (d *Daemon) groupNames() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.cfg.Groups))
	for _, g := range d.cfg.Groups {
		out = append(out, g.Name)
	}
	return out
}

// applyOwned runs workers for exactly the groups owned: a group lost
// retires its worker (after the step in flight; fencing already refuses
// the next), a group won gets one. It returns once the retired workers
// have stopped, so that the coordinator releases a group only when no
// step of this replica can still touch it.
func (d *Daemon) applyOwned(owned []string) {
	d.mu.Lock()
	next := map[string]bool{}
	for _, g := range owned {
		next[g] = true
	}
	d.owned = next
	var retire, reloading []*worker
	for name, w := range d.workers {
		if !next[name] {
			retire = append(retire, w)
			delete(d.workers, name)
		}
	}
	for w := range d.retiring {
		if !next[w.group.Name] {
			reloading = append(reloading, w)
		}
	}
	d.mu.Unlock()
	for _, w := range retire {
		close(w.quit)
		<-w.done
		w.rec.Close()
		d.log.Info("group handed over: its worker stopped", zap.String("group", w.group.Name))
	}
	// A reload may be stopping the worker of a group it removed: the
	// group's key waits for that too.
	for _, w := range reloading {
		<-w.done
	}
	d.mu.Lock()
	stopping := false
	select {
	case <-d.stop:
		stopping = true
	default:
	}
	var started []string
	if d.running && !stopping {
		for _, g := range d.cfg.Groups {
			if _, ok := d.workers[g.Name]; !ok && next[g.Name] {
				d.startWorker(g)
				started = append(started, g.Name)
			}
		}
	}
	d.mu.Unlock()
	for _, g := range started {
		d.log.Info("group taken over: this replica reconciles it now", zap.String("group", g))
	}
	d.pokeWatch()
}

// configuredElsewhere says whether the group is configured and run by
// another replica.
func (d *Daemon) configuredElsewhere(group string) bool {
	if d.opts.Coordinator == nil {
		return false
	}
	return slices.Contains(d.groupNames(), group)
}

// lookupElsewhere finds a server in the groups of other replicas, by
// listing them (a read: no fence needed).
func (d *Daemon) lookupElsewhere(ctx context.Context, id string) (controller.Seen, bool, error) {
	workers := d.snapshot()
	for _, g := range d.groupNames() {
		if _, mine := workers[g]; mine {
			continue
		}
		servers, err := d.cloud.Servers.ListServers(ctx, controller.GroupTag(g))
		if err != nil {
			return controller.Seen{}, false, fmt.Errorf("look for server %s in group %s: %w", id, g, err)
		}
		for _, s := range servers {
			if s.ID == id {
				return controller.Seen{ID: s.ID, Name: s.Name, ImageID: s.ImageID, Revision: s.Metadata[controller.MetaRevision]}, true, nil
			}
		}
	}
	return controller.Seen{}, false, nil
}

// coordinatedStatus lists every configured group with its owner; the
// groups of other replicas carry only that.
func (d *Daemon) coordinatedStatus(out Status, workers map[string]*worker) Status {
	c := d.opts.Coordinator
	rs := &ReplicaStatus{ID: c.ID(), Replicas: c.Replicas(), Owned: keys(workers)}
	if err := c.Health(); err != nil {
		rs.Fenced = err.Error()
	}
	out.Replica = rs
	for _, name := range d.groupNames() {
		if w, ok := workers[name]; ok {
			st := w.status()
			st.Owner = c.ID()
			out.Groups = append(out.Groups, st)
			continue
		}
		st := GroupStatus{Group: name, Owner: c.Owner(name), InProgress: false}
		if st.Owner == "" {
			st.Progress = "no replica holds the group yet"
		} else {
			st.Progress = fmt.Sprintf("reconciled by replica %s", st.Owner)
		}
		out.Groups = append(out.Groups, st)
	}
	slices.SortFunc(out.Groups, func(a, b GroupStatus) int {
		switch {
		case a.Group < b.Group:
			return -1
		case a.Group > b.Group:
			return 1
		}
		return 0
	})
	return out
}
