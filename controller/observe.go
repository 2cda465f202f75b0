package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// world is one observation of a group: what the cloud shows and what is
// recorded there.
type world struct {
	// image is the desired image: the selector's, or, while a rollback
	// rejected that one, the image the group went back to (rollingBack).
	// selected is the selector's.
	image, selected provisioner.Image
	rollingBack     bool
	rejection       rejection
	// noRollback says why the rollback on record cannot be done.
	noRollback string
	// servers are the group's live servers (not deleted).
	servers []provisioner.Server
	// traffic is where each server stands with the group's traffic.
	traffic map[string]plan.TrafficState
	// held lists the data volumes each server holds, inflight the
	// handovers recorded on volumes, free the volumes going nowhere.
	held     map[string][]string
	inflight []plan.InFlight
	free     []string
	record   groupRecord
	// blocked is what the group's blocker says ("" when nothing blocks).
	blocked string
}

// look says how much an observation reads.
type look int

const (
	// lookRecords reads the servers, the image and the group's records.
	lookRecords look = iota
	// lookToPreview reads the traffic and the data volumes as well,
	// changing nothing.
	lookToPreview
	// lookToAct marks the data volumes at first contact, and hands the
	// servers to the health checker.
	lookToAct
)

// observe lists the group's servers (one paginated list by tag) while it
// resolves the desired image, then reads what the look needs. Where the
// traffic stands is read before anything is acted on: a pool that cannot
// be found stops the group before any server is touched.
func (r *GroupReconciler) observe(ctx context.Context, how look) (world, error) {
	resolve := r.cloud.Images.ResolveImage
	if r.opts.ResolveImage != nil {
		resolve = r.opts.ResolveImage
	}
	// The image is resolved while the servers are listed: a round waits
	// for the slower of the two, not for both.
	type resolved struct {
		img provisioner.Image
		err error
	}
	imgc := make(chan resolved, 1)
	go func() {
		img, err := resolve(ctx, Selector(r.group.Image))
		imgc <- resolved{img, err}
	}()
	// So is the blocker asked: one that cannot answer may take its
	// whole timeout.
	blockedc := make(chan string, 1)
	go func() {
		if r.blocker == nil || how == lookRecords {
			blockedc <- ""
			return
		}
		blockedc <- r.blocker.Blocking(ctx)
	}()
	servers, err := r.cloud.Servers.ListServers(ctx, GroupTag(r.group.Name))
	got := <-imgc
	blocked := <-blockedc
	if err != nil {
		return world{}, err
	}
	r.remember(servers)
	if got.err != nil {
		if st := r.opts.Stages; len(st) > 0 && errors.Is(got.err, provisioner.ErrNotFound) {
			return world{}, fmt.Errorf("%w: no image for the selector carries tag %s yet; group %s adds it to an image it has run healthy for %s",
				ErrAwaitingStage, st[0].Tag, st[0].From.Name, plan.Span(st[0].From.Promote.After.D()))
		}
		return world{}, fmt.Errorf("resolve the image of group %s: %w", r.group.Name, stuckIfMissing(got.err))
	}
	w := world{image: got.img, selected: got.img, blocked: blocked}
	for _, s := range servers {
		if !s.Gone() {
			w.servers = append(w.servers, s)
		}
	}
	w.record = readRecord(w.servers, rolloutKey(w.image.ID, r.revision))
	w.rejection = r.knownRejection(w.record.rejection, w.servers)
	if err := r.rollBack(ctx, resolve, &w, w.rejection); err != nil {
		return world{}, err
	}
	if how == lookRecords {
		return w, nil
	}
	if r.refused != nil {
		return world{}, r.refused
	}
	if r.traffic != nil {
		if w.traffic, err = r.traffic.observe(ctx, w.servers); err != nil {
			return world{}, fmt.Errorf("group %s: read %s: %w", r.group.Name, r.traffic, err)
		}
	}
	if r.group.Stateful != nil {
		var vols []provisioner.Volume
		if how == lookToAct {
			vols, err = r.groupVolumes(ctx, w.servers)
		} else {
			vols, err = r.cloud.Volumes.VolumesWith(ctx, map[string]string{PropGroup: r.group.Name})
		}
		if err != nil {
			return world{}, err
		}
		w.held, w.inflight, w.free = statefulView(vols)
	}
	if how == lookToAct {
		r.watch(ctx, w.servers)
	}
	return w, nil
}

// rollBack makes the image a rejection went back to the desired one, when
// the rejection is of the selector's image on this revision. An image to
// go back to that is gone from Glance leaves the selector's image desired,
// with noRollback saying why (the rollout to it halts).
func (r *GroupReconciler) rollBack(ctx context.Context, resolve func(context.Context, provisioner.ImageSelector) (provisioner.Image, error), w *world, j rejection) error {
	if !j.applies(w.selected.ID, r.revision) {
		return nil
	}
	img, err := resolve(ctx, provisioner.ImageSelector{ID: j.to})
	switch {
	case errors.Is(err, provisioner.ErrNotFound):
		w.noRollback = fmt.Sprintf("cannot roll back from image %s: the image to go back to, %s, is gone from Glance", j.rejected.ImageID, j.to)
		return nil
	case err != nil:
		return fmt.Errorf("group %s: resolve image %s to roll back to: %w", r.group.Name, j.to, err)
	}
	w.image, w.rollingBack = img, true
	w.record = readRecord(w.servers, rolloutKey(img.ID, r.revision))
	w.record.rejection = j
	return nil
}

// Selector turns a group's image selector into the provisioner's.
func Selector(s config.ImageSelector) provisioner.ImageSelector {
	return provisioner.ImageSelector{ID: s.ID, Name: s.Name, Properties: s.Properties, Tags: s.Tags, Newest: s.Newest}
}

// planInput is the plan's view of the servers: the cloud's, the records,
// the health checker's verdicts, and what this reconciler first saw when.
func (r *GroupReconciler) planInput(w world, now time.Time) []plan.Server {
	checked := healthProber(r.group.Health) != nil
	watched, stopped := r.firstSeen(w.servers, now)
	out := make([]plan.Server, 0, len(w.servers))
	for _, s := range w.servers {
		p := planServer(s)
		p.Traffic = w.traffic[s.ID]
		p.StatefulVolumes = w.held[s.ID]
		p.WatchedSince = watched[s.ID]
		p.UnhealthySince = stopped[s.ID]
		switch {
		case !checked:
			// Without a health check, ACTIVE is the only signal there is.
			if s.Status == provisioner.StatusActive {
				p.Health, p.HealthySince = plan.Healthy, s.LaunchedAt
			}
		default:
			if o, ok := r.health.Observe(s.ID); ok {
				p.Health, p.HealthError = healthOf(o.State), o.LastError
				switch o.State {
				case healthcheck.Healthy:
					p.HealthySince = o.Since
				case healthcheck.Unhealthy:
					p.UnhealthySince = o.Since
				}
			}
		}
		// The chaos harness's known bug, at the edge like the others: a
		// rollback's servers pass their gate unchecked.
		if bugOn(BugRollbackSkipsGate) && w.rollingBack && s.ImageID == w.image.ID && p.Health != plan.Healthy {
			p.Health, p.HealthySince, p.HealthError, p.UnhealthySince = plan.Healthy, p.Created, "", time.Time{}
		}
		out = append(out, p)
	}
	return out
}

func healthOf(s healthcheck.State) plan.Health {
	switch s {
	case healthcheck.Healthy:
		return plan.Healthy
	case healthcheck.Unhealthy:
		return plan.Unhealthy
	}
	return plan.HealthUnknown
}

// firstSeen returns when this reconciler first listed each server, and
// when it first saw each one stopped, paused or suspended (as it stands
// now); it forgets the servers no longer listed. Both only postpone a
// judgement: a restart looks again before it fails or heals a server.
func (r *GroupReconciler) firstSeen(servers []provisioner.Server, now time.Time) (watched, stopped map[string]time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	watched = make(map[string]time.Time, len(servers))
	stopped = map[string]time.Time{}
	for _, s := range servers {
		watched[s.ID] = cmp.Or(r.watched[s.ID], now)
		switch s.Status {
		case provisioner.StatusShutoff, plan.StatusPaused, plan.StatusSuspended:
			stopped[s.ID] = cmp.Or(r.stoppedSince[s.ID], now)
		}
	}
	r.watched, r.stoppedSince = watched, stopped
	return watched, stopped
}

// recentCreate is a server this reconciler created, remembered until a
// list shows it (or for recentTTL): only to keep counting it through a list
// that misses it, never to act on it.
type recentCreate struct {
	name, image, revision string
	at                    time.Time
}

const recentTTL = 3 * time.Minute

// unlisted returns the servers this reconciler created lately that the list
// did not show, and forgets the ones it did show or that are too old.
func (r *GroupReconciler) unlisted(listed []provisioner.Server, now time.Time) []plan.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	shown := make(map[string]bool, len(listed))
	for _, s := range listed {
		shown[s.ID] = true
	}
	var out []plan.Server
	for id, c := range r.recent {
		switch {
		case shown[id] || now.Sub(c.at) > recentTTL:
			delete(r.recent, id)
		default:
			r.log.Warn("a server created moments ago is missing from the list; counting it", zap.String("server", id), zap.String("name", c.name))
			out = append(out, plan.Server{ID: id, Name: c.name, Status: plan.StatusBuild, ImageID: c.image,
				Revision: c.revision, Created: c.at, Unlisted: true})
		}
	}
	return out
}

// watch hands the ACTIVE servers that are not on their way out to the
// health checker.
// firstProbeWait is how long a round waits for the first probe of a
// server it has just started watching: the plan then sees the new server
// serve in the round that first saw it ACTIVE, rather than a round later.
const firstProbeWait = 250 * time.Millisecond

func (r *GroupReconciler) watch(ctx context.Context, servers []provisioner.Server) {
	prober := healthProber(r.group.Health)
	if prober == nil {
		return
	}
	h := r.group.Health
	policy := healthcheck.Policy{
		Interval: h.Interval.D(),
		// A new server is probed more often until it first passes: the
		// rollout learns sooner that it serves, at the cost of a few probes
		// per booting server.
		RiseInterval:       h.RiseInterval.D(),
		Timeout:            h.Timeout.D(),
		HealthyThreshold:   h.HealthyThreshold,
		UnhealthyThreshold: h.UnhealthyThreshold,
		Grace:              h.Grace.D(),
	}
	r.mu.Lock()
	for id := range r.gated {
		if !slices.ContainsFunc(servers, func(s provisioner.Server) bool { return s.ID == id }) {
			delete(r.gated, id)
		}
	}
	r.mu.Unlock()
	var targets []healthcheck.Target
	for _, s := range servers {
		if s.Status != provisioner.StatusActive || s.TaskState == provisioner.TaskDeleting || s.Metadata[MetaPhase] == plan.PhaseDeleting {
			continue
		}
		addr := address(s, r.group.Networks)
		if addr == "" {
			continue
		}
		// Probing starts over when the server boots again: its launch,
		// or a rebuild in place recorded later than that.
		since := s.LaunchedAt
		if since.IsZero() {
			since = s.Created
		}
		if t, ok := parseTime(s.Metadata[MetaCreatedAt]); ok && t.After(since) {
			since = t
		}
		r.mu.Lock()
		if t := r.gated[s.ID]; t.After(since) {
			since = t
		}
		r.mu.Unlock()
		targets = append(targets, healthcheck.Target{ID: s.ID, Address: addr, Prober: prober, Policy: policy, Since: since})
	}
	r.health.Watch(targets)
	ids := make([]string, len(targets))
	for i, t := range targets {
		ids[i] = t.ID
	}
	r.health.WaitProbed(ctx, ids, firstProbeWait)
}

// healthProber builds the probe a group's health check asks for, or nil
// when the group has none (then ACTIVE is the only signal).
func healthProber(h config.Health) healthcheck.Prober {
	switch {
	case h.HTTP != nil:
		return healthcheck.HTTPProbe{Port: h.HTTP.Port, Path: h.HTTP.Path, ExpectStatus: h.HTTP.ExpectStatus}
	case h.TCP != nil:
		return healthcheck.TCPProbe{Port: h.TCP.Port}
	}
	return nil
}

// address picks the address to probe: on the group's first network when
// the cloud names it that way, else the first address in network order.
func address(s provisioner.Server, networks []string) string {
	if len(networks) > 0 {
		if list := s.Addresses[networks[0]]; len(list) > 0 {
			return list[0]
		}
	}
	names := make([]string, 0, len(s.Addresses))
	for n := range s.Addresses {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if list := s.Addresses[n]; len(list) > 0 {
			return list[0]
		}
	}
	return ""
}
