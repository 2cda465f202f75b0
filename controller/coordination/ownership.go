package coordination

import (
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Run shares the groups with the other replicas until ctx ends. Every
// poll (and at once when a key under the prefix changes) it reads the
// owners and the live replicas, sheds or claims groups so that it holds
// at most ceil(groups/replicas), and calls apply with every group it owns
// whenever that set changes. groups returns the configured group names.
//
// apply must return only once the workers of the groups it no longer
// lists have stopped: a shed group's key is deleted after apply returns,
// so that its new owner never acts while the old one still does.
func (r *Replica) Run(ctx context.Context, groups func() []string, apply func(owned []string)) error {
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	go r.watch(watchCtx)
	for {
		r.pass(ctx, groups(), apply)
		timer := time.NewTimer(r.opts.Poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-r.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// watch pokes the loop when a key under the prefix changes: a revoked
// lease or a shed group is claimed at once rather than at the next poll.
func (r *Replica) watch(ctx context.Context) {
	wc := r.cli.Watch(clientv3.WithRequireLeader(ctx), r.opts.Prefix, clientv3.WithPrefix())
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wc:
			if !ok {
				// The watch ends when it loses its leader; polling goes on,
				// and a new watch is tried at the next change of state.
				select {
				case <-ctx.Done():
					return
				case <-time.NewTimer(r.opts.Poll).C:
				}
				wc = r.cli.Watch(clientv3.WithRequireLeader(ctx), r.opts.Prefix, clientv3.WithPrefix())
				continue
			}
			r.poke()
		}
	}
}

// view is one consistent read of the keys.
type view struct {
	replicas int
	// owner and lease of each group's key.
	owner map[string]string
	lease map[string]clientv3.LeaseID
}

func (r *Replica) look(ctx context.Context) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Poll)
	defer cancel()
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.opts.Prefix+"replicas/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(r.opts.Prefix+"groups/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return view{}, err
	}
	v := view{owner: map[string]string{}, lease: map[string]clientv3.LeaseID{}}
	me := false
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		v.replicas++
		me = me || string(kv.Key) == r.replicaKey()
	}
	if !me {
		v.replicas++
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		g := strings.TrimPrefix(string(kv.Key), r.opts.Prefix+"groups/")
		v.owner[g] = string(kv.Value)
		v.lease[g] = clientv3.LeaseID(kv.Lease)
	}
	return v, nil
}

// score orders the groups differently for each replica, so that replicas
// claiming at the same moment mostly go for different groups, and a
// replica sheds the groups it cares least for.
func score(replica, group string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(replica))
	h.Write([]byte{0})
	h.Write([]byte(group))
	return h.Sum64()
}

func (r *Replica) pass(ctx context.Context, configured []string, apply func([]string)) {
	s := r.session()
	if s.lease == 0 {
		// No lease: whatever keys this replica had are gone with it.
		r.setOwned(nil, apply)
		r.mu.Lock()
		r.pollErr = nil
		r.mu.Unlock()
		return
	}
	v, err := r.look(ctx)
	r.mu.Lock()
	wasErr := r.pollErr
	r.pollErr = err
	if err == nil {
		r.owners, r.replicas = maps.Clone(v.owner), v.replicas
	}
	r.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && wasErr == nil {
			// The workers stay: the groups may still be this replica's, and
			// fencing refuses every step until that is confirmed again.
			r.log.Warn("cannot read the owners from etcd: the groups this replica holds stay, and no step is taken until etcd confirms them", zap.Error(err))
		}
		return
	}
	if wasErr != nil {
		r.log.Info("etcd answers again")
	}
	isMine := func(g string) bool { return v.owner[g] == r.opts.ReplicaID && v.lease[g] == s.lease }
	want := map[string]bool{}
	for _, g := range configured {
		want[g] = true
	}
	var mine, stale []string
	for _, g := range configured {
		if isMine(g) {
			mine = append(mine, g)
		}
	}
	for g := range v.owner {
		if isMine(g) && !want[g] {
			stale = append(stale, g)
		}
	}
	// Keys of groups no longer configured go, so that a replica with the
	// new configuration does not count them — once their workers stopped.
	if len(stale) > 0 {
		r.setOwned(mine, apply)
		for _, g := range stale {
			r.release(ctx, g, s.lease, "the group is no longer configured")
			delete(v.owner, g)
		}
	}
	fair := (len(configured) + v.replicas - 1) / max(v.replicas, 1)
	alive := s.aliveErr(r.opts.Now()) == nil
	switch {
	case len(mine) > fair:
		sort.Slice(mine, func(i, j int) bool { return score(r.opts.ReplicaID, mine[i]) < score(r.opts.ReplicaID, mine[j]) })
		extra := mine[:len(mine)-fair]
		mine = slices.Clone(mine[len(mine)-fair:])
		// The workers of the extras stop first; only then do the keys go.
		r.setOwned(mine, apply)
		for _, g := range extra {
			r.release(ctx, g, s.lease, "sharing the work with a replica that joined")
			delete(v.owner, g)
		}
	case len(mine) < fair && alive:
		var free []string
		for _, g := range configured {
			if _, taken := v.owner[g]; !taken {
				free = append(free, g)
			}
		}
		sort.Slice(free, func(i, j int) bool { return score(r.opts.ReplicaID, free[i]) > score(r.opts.ReplicaID, free[j]) })
		for _, g := range free {
			if len(mine) >= fair {
				break
			}
			if owner, ok := r.claim(ctx, g, s.lease); ok {
				mine = append(mine, g)
				v.owner[g] = r.opts.ReplicaID
			} else if owner != "" {
				v.owner[g] = owner
			}
		}
	}
	r.mu.Lock()
	r.owners = maps.Clone(v.owner)
	r.mu.Unlock()
	r.setOwned(mine, apply)
}

// claim creates the group's key with this replica's lease, if no one
// holds it; it returns the owner when someone else won.
func (r *Replica) claim(ctx context.Context, g string, lease clientv3.LeaseID) (string, bool) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Poll)
	defer cancel()
	k := r.groupKey(g)
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, r.opts.ReplicaID, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		r.log.Warn("could not claim the group", zap.String("group", g), zap.Error(err))
		return "", false
	}
	if !resp.Succeeded {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			return string(kvs[0].Value), false
		}
		return "", false
	}
	r.log.Info("claimed the group: this replica reconciles it now", zap.String("group", g))
	return r.opts.ReplicaID, true
}

// release deletes the group's key if it is still this replica's.
func (r *Replica) release(ctx context.Context, g string, lease clientv3.LeaseID, why string) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Poll)
	defer cancel()
	k := r.groupKey(g)
	_, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(k), "=", r.opts.ReplicaID), clientv3.Compare(clientv3.LeaseValue(k), "=", lease)).
		Then(clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		// The key stays with the lease; the group is not reconciled by
		// anyone until the next pass releases it or the lease ends.
		r.log.Warn("could not release the group", zap.String("group", g), zap.String("why", why), zap.Error(err))
		return
	}
	r.log.Info("released the group", zap.String("group", g), zap.String("why", why))
}

// setOwned tells apply the owned set when it changed, and logs the groups
// lost without having been released.
func (r *Replica) setOwned(owned []string, apply func([]string)) {
	next := map[string]bool{}
	for _, g := range owned {
		next[g] = true
	}
	r.mu.Lock()
	prev := r.owned
	r.mu.Unlock()
	if maps.Equal(prev, next) {
		return
	}
	for g := range prev {
		if !next[g] {
			r.log.Warn("this replica no longer owns the group: its worker retires", zap.String("group", g))
		}
	}
	sorted := slices.Sorted(maps.Keys(next))
	apply(sorted)
	r.mu.Lock()
	r.owned = next
	r.mu.Unlock()
}

// Owner is the replica that held the group at the last look, "" when
// none did or etcd was not read yet.
func (r *Replica) Owner(group string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owners[group]
}

// Health says why this replica may not act at the moment (its lease not
// known alive, or etcd not answering), or nil.
func (r *Replica) Health() error {
	if err := r.session().aliveErr(r.opts.Now()); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pollErr != nil {
		return r.pollErr
	}
	return nil
}

// Replicas is the number of live replicas at the last look.
func (r *Replica) Replicas() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replicas
}
