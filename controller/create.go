package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// createServers boots the servers the plan asked for, unless the cloud
// refused one lately (a full quota is not hammered). Each is created with
// the group tag and Phoenix's record in the create call itself.
func (r *GroupReconciler) createServers(ctx context.Context, creates []plan.Create, img provisioner.Image, record map[string]string, now time.Time) error {
	r.mu.Lock()
	blocked := now.Before(r.blockedUntil)
	r.mu.Unlock()
	if blocked {
		return nil
	}
	spec, err := r.serverSpec(ctx, img)
	if err != nil {
		return err
	}
	maps.Copy(spec.Metadata, record)
	// A failed create is reported on its own (event, log, Summary's
	// CreateError) and paces the next ones; it does not fail the cycle,
	// whose outcome the next list settles.
	_ = parallel(creates, r.opts.Parallelism, func(c plan.Create) error { return r.createOne(ctx, spec, c, now) })
	return nil
}

// serverSpec resolves the names in the group spec. It runs only when
// servers are to be created, so a group at rest costs the cloud no flavor
// or network lookups.
func (r *GroupReconciler) serverSpec(ctx context.Context, img provisioner.Image) (provisioner.ServerSpec, error) {
	g := r.group
	now := r.opts.Now()
	r.mu.Lock()
	names, fresh := r.names, !r.namesAt.IsZero() && now.Sub(r.namesAt) < namesTTL
	r.mu.Unlock()
	if !fresh {
		flavor, err := r.cloud.Servers.ResolveFlavor(ctx, g.Flavor)
		if err != nil {
			return provisioner.ServerSpec{}, stuckIfMissing(fmt.Errorf("resolve the flavor of group %s: %w", g.Name, err))
		}
		nets := make([]string, 0, len(g.Networks))
		for _, n := range g.Networks {
			id, err := r.cloud.Servers.ResolveNetwork(ctx, n)
			if err != nil {
				return provisioner.ServerSpec{}, stuckIfMissing(fmt.Errorf("resolve the networks of group %s: %w", g.Name, err))
			}
			nets = append(nets, id)
		}
		var serverGroup string
		if g.ServerGroup != "" {
			serverGroup, err = r.cloud.Servers.ResolveServerGroup(ctx, g.ServerGroup)
			if err != nil {
				return provisioner.ServerSpec{}, stuckIfMissing(fmt.Errorf("resolve the server group of group %s: %w", g.Name, err))
			}
		}
		names = resolvedNames{flavor: flavor, networks: nets, serverGroup: serverGroup}
		r.mu.Lock()
		r.names, r.namesAt = names, now
		r.mu.Unlock()
	}
	spec := provisioner.ServerSpec{
		ImageID:        img.ID,
		FlavorID:       names.flavor,
		NetworkIDs:     slices.Clone(names.networks),
		KeyName:        g.KeyName,
		SecurityGroups: g.SecurityGroups,
		ServerGroupID:  names.serverGroup,
		UserData:       g.UserData,
		Metadata: map[string]string{
			MetaGroup:    g.Name,
			MetaRevision: r.revision,
			MetaImage:    img.ID,
			MetaRollout:  r.Rollout(),
		},
		Tags: []string{GroupTag(g.Name)},
	}
	if bugOn(BugUntagged) {
		spec.Tags = nil
	}
	return spec, nil
}

func (r *GroupReconciler) createOne(ctx context.Context, base provisioner.ServerSpec, c plan.Create, now time.Time) error {
	requestID := uuid.NewString()
	spec := base
	spec.Name = fmt.Sprintf("%s-%s", r.group.Name, requestID[:8])
	spec.AvailabilityZone = c.Zone
	spec.Metadata = make(map[string]string, len(base.Metadata)+len(r.group.Metadata)+2)
	maps.Copy(spec.Metadata, r.group.Metadata)
	maps.Copy(spec.Metadata, base.Metadata)
	spec.Metadata[MetaRequestID] = requestID
	spec.Metadata[MetaCreatedAt] = formatTime(now)

	s, err := r.cloud.Servers.CreateServer(ctx, spec)
	if err != nil {
		r.mu.Lock()
		r.namesAt = time.Time{}
		r.mu.Unlock()
		r.createFailed(err, now)
		r.log.Warn("create failed", zap.String("name", spec.Name), zap.String("request_id", requestID), zap.Error(err))
		r.emit(Event{Type: EventCreateErr, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone, Message: err.Error()})
		return err
	}
	r.mu.Lock()
	r.refusals = 0
	r.createErr = nil
	r.backoff = r.opts.CreateBackoff
	r.createsIssued++
	r.recent[s.ID] = recentCreate{name: spec.Name, image: spec.ImageID, revision: spec.Metadata[MetaRevision], at: now}
	r.mu.Unlock()
	r.ledger.createdServer(s.ID, now)
	r.log.Info("created server", zap.String("server", s.ID), zap.String("name", spec.Name),
		zap.String("image", spec.ImageID), zap.String("zone", c.Zone), zap.String("request_id", requestID))
	r.emit(Event{Type: EventCreate, Server: s.ID, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone})
	return nil
}

// createFailed paces creates after a refusal. An unknown outcome is not a
// refusal: the next list decides whether the server exists.
func (r *GroupReconciler) createFailed(err error, now time.Time) {
	var refused *provisioner.RefusedError
	quota := provisioner.IsQuota(err)
	if !quota && !errors.As(err, &refused) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.createErr = err
	if !quota {
		r.refusals++
	}
	if until := now.Add(r.backoff); until.After(r.blockedUntil) {
		r.blockedUntil = until
		r.backoff = min(2*r.backoff, r.opts.MaxCreateBackoff)
	}
}

// refusalsBeforeStuck is how many creates in a row the cloud may refuse
// (other than for quota, which a human elsewhere may free) before the
// group is declared unable to proceed.
const refusalsBeforeStuck = 3
