package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/coordination"
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
	if r.opts.Location != "" {
		spec.Metadata[MetaLocation] = r.opts.Location
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
		r.fenced = r.fenced || errors.Is(err, coordination.ErrNotOwner)
		r.mu.Unlock()
		waits := r.createFailed(err, now)
		if zoneRefused(err) {
			r.zoneFailed(c.Zone, err.Error(), now)
		}
		r.log.Warn("create failed", zap.String("name", spec.Name), zap.String("request_id", requestID), zap.Error(err))
		r.emit(Event{Type: EventCreateErr, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone, Message: err.Error()})
		if waits != "" {
			r.log.Warn("waiting for quota: the cloud refuses new servers", zap.String("cloud_message", waits))
			r.emit(Event{Type: EventQuotaBlocked, Image: spec.ImageID, Reason: waits, Message: fmt.Sprintf(
				"group %s waits for quota: the cloud refuses new servers (%s). Nothing is deleted meanwhile and the wait does not count "+
					"against rollout.progress_deadline; creates are tried again at least every %s. Free or raise the quota, or lower rollout.max_surge.",
				r.group.Name, waits, r.opts.MaxCreateBackoff)})
		}
		return err
	}
	r.mu.Lock()
	r.refusals = 0
	r.createErr = nil
	r.backoff = r.opts.CreateBackoff
	r.createsIssued++
	r.recent[s.ID] = recentCreate{name: spec.Name, image: spec.ImageID, revision: spec.Metadata[MetaRevision], at: now}
	waited := r.endQuotaWait(now)
	r.mu.Unlock()
	r.ledger.createdServer(s.ID, now)
	r.log.Info("created server", zap.String("server", s.ID), zap.String("name", spec.Name),
		zap.String("image", spec.ImageID), zap.String("zone", c.Zone), zap.String("request_id", requestID))
	r.emit(Event{Type: EventCreate, Server: s.ID, Name: spec.Name, Image: spec.ImageID, Zone: c.Zone})
	if waited > 0 {
		r.log.Info("quota freed: the cloud accepts new servers again", zap.Duration("waited", waited))
		r.emit(Event{Type: EventQuotaFreed, Server: s.ID, Name: spec.Name, Image: spec.ImageID, Message: fmt.Sprintf(
			"group %s: the cloud accepts new servers again after %s waiting for quota; the rollout goes on", r.group.Name, waited.Round(time.Second))})
	}
	return nil
}

// createFailed paces creates after a refusal. An unknown outcome is not a
// refusal: the next list decides whether the server exists. A refusal for
// quota starts a quota wait, if none is on, and returns the cloud's
// message when it did; it is not counted towards the refusals that make
// a group stuck, since a human elsewhere may free the quota. Another
// failure leaves a wait as it is: only a create that succeeds ends it.
func (r *GroupReconciler) createFailed(err error, now time.Time) (waits string) {
	var refused *provisioner.RefusedError
	var quota *provisioner.QuotaError
	isQuota := errors.As(err, &quota)
	if !isQuota && !errors.As(err, &refused) {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.createErr = err
	if isQuota {
		// A message the cloud left empty still makes a wait.
		msg := cmp.Or(quota.Message, "the cloud refused a create for quota")
		if r.quotaWait == "" {
			r.quotaSince, waits = now, msg
		}
		r.quotaWait = msg
	} else {
		r.refusals++
	}
	if until := now.Add(r.backoff); until.After(r.blockedUntil) {
		r.blockedUntil = until
		r.backoff = min(2*r.backoff, r.opts.MaxCreateBackoff)
	}
	return waits
}

// endQuotaWait ends a quota wait, if one is on, and says how long it
// lasted: the stall deadline runs again from now. Call with r.mu held.
func (r *GroupReconciler) endQuotaWait(now time.Time) time.Duration {
	if r.quotaWait == "" {
		return 0
	}
	waited := max(now.Sub(r.quotaSince), time.Nanosecond)
	r.quotaWait, r.quotaSince, r.quotaFreed = "", time.Time{}, now
	return waited
}

// refusalsBeforeStuck is how many creates in a row the cloud may refuse
// (other than for quota, which a human elsewhere may free) before the
// group is declared unable to proceed.
const refusalsBeforeStuck = 3

// zoneAvoid is how long new servers keep out of a zone after a create or a
// boot failed there (plan.Target.ZoneAvoid): long enough that a zone out
// of capacity does not spend the failure budget boot after boot, short
// enough that a zone back in service soon gets its share again.
const zoneAvoid = 10 * time.Minute

// zoneRefused says whether a failed create speaks against the zone it
// named: a refusal other than for quota or a rate limit, or an answer that
// says no valid host was found. A timeout or a dropped connection does
// not.
func zoneRefused(err error) bool {
	var refused *provisioner.RefusedError
	return errors.As(err, &refused) || strings.Contains(strings.ToLower(err.Error()), "no valid host")
}

// failedBoots remembers the zone of each of the group's servers in ERROR
// as failing now.
func (r *GroupReconciler) failedBoots(servers []provisioner.Server, now time.Time) {
	for _, s := range servers {
		if s.Status == provisioner.StatusError {
			r.zoneFailed(s.AvailabilityZone, fmt.Sprintf("server %s is in ERROR: %s", s.Name, cmp.Or(s.Fault, "no fault given")), now)
		}
	}
}

// zoneFailed remembers that a create or a boot failed in zone at now, and
// says so when the zone starts being avoided. A zone the group does not
// list is no concern of its placement.
func (r *GroupReconciler) zoneFailed(zone, reason string, now time.Time) {
	if !slices.Contains(r.group.AvailabilityZones, zone) {
		return
	}
	r.mu.Lock()
	last, ok := r.zoneFailures[zone]
	if now.After(last) {
		r.zoneFailures[zone] = now
	}
	r.mu.Unlock()
	if !ok || now.Sub(last) >= zoneAvoid {
		r.log.Warn("avoiding zone: a create or a boot failed there", zap.String("zone", zone), zap.String("reason", reason),
			zap.Time("until", now.Add(zoneAvoid)))
	}
}
