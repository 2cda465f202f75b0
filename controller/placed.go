package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Location is one place the servers of a placed group live: a region of
// a cloud, reached through its own connection.
type Location struct {
	Name   string
	Weight int
	// Zones are the availability zones within the location.
	Zones []string
	// Connect opens the location's connection; it is tried again each
	// round until it succeeds, so a location down when Phoenix starts
	// counts as failing, not as fatal.
	Connect func(ctx context.Context) (provisioner.Cloud, error)
}

// Placed keeps a group spread over several locations. Each location has a
// GroupReconciler of its own, on its own connection, with its own image,
// flavor, networks and traffic (a pool belongs to one location); plan.Place
// gives each, every round, its part of the group's count, surge and
// unavailability, and moves the share of a location that is down to the
// others. A down location is frozen: nothing is created or deleted there.
//
// What it keeps in memory is observation: since when each location's API
// or creates fail, and the last counts each location reported. Lost in a
// restart, a failover waits failover_after again, while every location
// keeps the serving servers it has (plan.Place never lets one go while
// another is short).
type Placed struct {
	group config.Group
	sink  EventSink
	log   *zap.Logger
	opts  Options
	locs  []*placedLocation
	after time.Duration
	// base is the logger the locations' reconcilers start from.
	base *zap.Logger
	// changes merges the locations' health changes, so a round follows
	// a server's rise or fall in any of them.
	changes chan struct{}

	mu sync.Mutex
	// closed: no location connected from now on gets a reconciler.
	closed bool
}

type placedLocation struct {
	Location
	// Under Placed.mu.
	rec   *GroupReconciler
	cloud provisioner.Cloud
	// busy: a connect or a probe of the location is in flight; inRound
	// a round. lastDec and lastErr are what its last round ended with.
	busy, inRound bool
	lastDec       plan.Decision
	lastErr       error
	view          plan.LocationView
	target        plan.LocationTarget
	stopped       chan struct{}
}

// NewPlaced wires a placed group; Close it to stop its health probes.
func NewPlaced(g config.Group, locs []Location, failoverAfter time.Duration, sink EventSink, log *zap.Logger, opts Options) *Placed {
	opts.defaults()
	if sink == nil {
		sink = EventFunc(func(Event) {})
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Placed{group: g, sink: sink, log: log.With(zap.String("group", g.Name)), opts: opts, after: failoverAfter, base: log, changes: make(chan struct{}, 1)}
	for _, l := range locs {
		p.locs = append(p.locs, &placedLocation{Location: l, view: plan.LocationView{Name: l.Name, Weight: l.Weight, Servers: -1},
			target: plan.LocationTarget{Name: l.Name, State: plan.LocationFailing, Reason: "not reached yet"}})
	}
	return p
}

// connect starts opening the connections not open yet, in the
// background: a location whose API does not answer must not hold up the
// rounds of the others. One that fails counts as the location's API
// failing.
func (p *Placed) connect(ctx context.Context) {
	for _, l := range p.locs {
		p.mu.Lock()
		busy := l.rec != nil || l.busy
		l.busy = l.busy || !busy
		p.mu.Unlock()
		if busy {
			continue
		}
		go func() {
			now := p.opts.Now()
			cloud, err := l.Connect(ctx)
			p.mu.Lock()
			defer p.mu.Unlock()
			l.busy = false
			if p.closed {
				return
			}
			if err != nil {
				if ctx.Err() == nil {
					p.apiFailed(l, now)
					p.log.Warn("cannot connect to the location", zap.String("location", l.Name), zap.Error(err))
				}
				return
			}
			l.cloud = p.watch(l, cloud.Complete())
			g := p.group
			g.AvailabilityZones = l.Zones
			opts := p.opts
			opts.Location = l.Name
			opts.Place = func(servers []provisioner.Server, unlisted int, now time.Time) (plan.LocationTarget, map[string]string) {
				return p.place(l, servers, unlisted, now)
			}
			// Its events say where they happened.
			sink := EventFunc(func(e Event) {
				e.Location = l.Name
				p.sink.Emit(e)
			})
			l.rec = NewGroupReconciler(g, l.cloud, sink, p.base.With(zap.String("location", l.Name)), opts)
			l.stopped = make(chan struct{})
			go forward(l.rec.HealthChanges(), p.changes, l.stopped)
			// Its first round may start at once.
			select {
			case p.changes <- struct{}{}:
			default:
			}
		}()
	}
}

// probe lists a location whose API fails or that is down, in the
// background, to see it answer again; the round does not wait for it.
func (p *Placed) probe(ctx context.Context, l *placedLocation) {
	p.mu.Lock()
	if l.busy {
		p.mu.Unlock()
		return
	}
	l.busy = true
	cloud := l.cloud
	p.mu.Unlock()
	go func() {
		_, err := cloud.Servers.ListServers(ctx, GroupTag(p.group.Name))
		p.mu.Lock()
		l.busy = false
		p.mu.Unlock()
		if err == nil {
			select {
			case p.changes <- struct{}{}:
			default:
			}
		}
	}()
}

// forward passes each signal of from on to to, without blocking, until stop.
func forward(from <-chan struct{}, to chan struct{}, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-from:
			select {
			case to <- struct{}{}:
			default:
			}
		}
	}
}

// watch wraps a location's servers service so that the outcome of its
// lists and creates tells whether the location is failing.
func (p *Placed) watch(l *placedLocation, cloud provisioner.Cloud) provisioner.Cloud {
	cloud.Servers = &watchedServers{Servers: cloud.Servers, p: p, l: l}
	return cloud
}

type watchedServers struct {
	provisioner.Servers
	p *Placed
	l *placedLocation
}

func (w *watchedServers) ListServers(ctx context.Context, tag string) ([]provisioner.Server, error) {
	// A failure is dated from when the call began: its retries took the
	// time after it.
	began := w.p.opts.Now()
	servers, err := w.Servers.ListServers(ctx, tag)
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	switch {
	case err == nil:
		// Answering again: what it holds is known, what it serves not
		// until its own round says.
		v := &w.l.view
		if !v.Listed {
			v.Listed, v.Servers, v.Serving = true, 0, 0
			for _, s := range servers {
				if !s.Gone() {
					v.Servers++
				}
			}
		}
		v.APIFailingSince = time.Time{}
	case ctx.Err() == nil:
		w.p.apiFailed(w.l, began)
	}
	return servers, err
}

func (w *watchedServers) CreateServer(ctx context.Context, spec provisioner.ServerSpec) (provisioner.Server, error) {
	began := w.p.opts.Now()
	s, err := w.Servers.CreateServer(ctx, spec)
	if err != nil && ctx.Err() == nil && !errors.Is(err, provisioner.ErrUnknownOutcome) {
		now := began
		w.p.mu.Lock()
		if w.l.view.CreatesFailingSince.IsZero() {
			w.l.view.CreatesFailingSince = now
		}
		w.p.mu.Unlock()
	}
	return s, err
}

// apiFailed notes a failed look at the location. Call with p.mu held.
func (p *Placed) apiFailed(l *placedLocation, now time.Time) {
	// What it served is unknown from now on: nothing elsewhere may go
	// on the strength of it.
	l.view.Listed, l.view.Serving, l.view.Pending = false, 0, 0
	if l.view.APIFailingSince.IsZero() {
		l.view.APIFailingSince = now
	}
}

// place is a location's round asking for its part: it brings the
// location's view up to date with what its round listed, places the whole
// group, and reserves the location's ceiling until its next list.
func (p *Placed) place(l *placedLocation, servers []provisioner.Server, unlisted int, now time.Time) (plan.LocationTarget, map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A down record on these servers speaks for a location this process
	// has not found down itself (a restart).
	for _, o := range p.locs {
		if since, ok := downRecord(servers, o.Name); o != l && ok && o.view.DownRecorded.IsZero() {
			o.view.DownRecorded = since
		}
	}
	v := &l.view
	v.Listed, v.APIFailingSince = true, time.Time{}
	v.Servers = unlisted
	booted := false
	for _, s := range servers {
		if s.Gone() {
			continue
		}
		v.Servers++
		// Nova's created is whole seconds: the created-at record says
		// whether a server created the second its creates began failing
		// came after.
		created := s.Created
		if t, ok := parseTime(s.Metadata[MetaCreatedAt]); ok {
			created = t
		}
		switch {
		case s.Status == plan.StatusError && v.CreatesFailingSince.IsZero():
			v.CreatesFailingSince = now
		case s.Status == plan.StatusActive && !v.CreatesFailingSince.IsZero() && created.After(v.CreatesFailingSince):
			booted = true
		}
	}
	// A location that serves its share with nothing to replace needs no
	// create: a create that failed once there is no reason to move its
	// share (it would stay failing, with nothing to try, for ever).
	if booted || v.Listed && v.Serving >= l.target.Share && v.Pending == 0 && l.target.State != plan.LocationDown {
		v.CreatesFailingSince = time.Time{}
	}
	targets := p.placeAll(now)
	t := targets[slices.IndexFunc(p.locs, func(o *placedLocation) bool { return o == l })]
	// Until its round ends, the location may have up to its ceiling, and
	// may have taken out of service its surplus and its unavailability:
	// the other locations plan with that, not with what it had before,
	// or two rounds would spend one budget twice.
	v.Servers = max(v.Servers, t.Count+t.MaxSurge)
	v.Serving = max(0, min(v.Serving, t.Count)-t.MaxUnavailable)
	return t, p.records(l, servers)
}

// records is what the servers of l should carry of the other locations
// and do not yet: since when each down one is down, "up" where a down
// record of one back up remains. Call with p.mu held.
func (p *Placed) records(l *placedLocation, servers []provisioner.Server) map[string]string {
	md := map[string]string{}
	for _, o := range p.locs {
		if o == l {
			continue
		}
		key := MetaLocationDown + o.Name
		want := "up"
		if !o.target.DownSince.IsZero() {
			want = formatTime(o.target.DownSince)
		}
		for _, s := range holders(servers) {
			have, ok := s.Metadata[key]
			if have != want && (ok || want != "up") {
				md[key] = want
			}
		}
	}
	return md
}

// downRecord reads since when location is down, as servers record it.
func downRecord(servers []provisioner.Server, location string) (time.Time, bool) {
	var since time.Time
	for _, s := range servers {
		if t, ok := parseTime(s.Metadata[MetaLocationDown+location]); ok && (since.IsZero() || t.Before(since)) {
			since = t
		}
	}
	return since, !since.IsZero()
}

// placeAll places the group from every location's view and reports the
// changes of state. Call with p.mu held.
func (p *Placed) placeAll(now time.Time) []plan.LocationTarget {
	g := p.group
	in := plan.Placement{
		Count:          g.Count,
		MaxSurge:       g.Rollout.MaxSurge.Resolve(g.Count, true),
		MaxUnavailable: g.Rollout.MaxUnavailable.Resolve(g.Count, false),
		FailoverAfter:  p.failoverAfter(),
	}
	for _, l := range p.locs {
		in.Locations = append(in.Locations, l.view)
	}
	out := plan.Place(in, now)
	for i, l := range p.locs {
		t := out[i]
		if t.State != l.target.State {
			p.stateChanged(l, t, now)
		}
		l.target = t
		l.view.DownRecorded = t.DownSince
	}
	return out
}

func (p *Placed) failoverAfter() time.Duration {
	if p.after > 0 {
		return p.after
	}
	return 2 * time.Minute
}

func (p *Placed) stateChanged(l *placedLocation, t plan.LocationTarget, now time.Time) {
	fields := []zap.Field{zap.String("location", l.Name), zap.String("from", l.target.State), zap.String("state", t.State),
		zap.String("reason", t.Reason), zap.Int("share", t.Share)}
	var typ string
	switch t.State {
	case plan.LocationDown:
		typ = EventLocationDown
		p.log.Error("location down: its share of the group moves to the other locations; nothing is deleted there", fields...)
	case plan.LocationUp:
		typ = EventLocationUp
		p.log.Info("location up: the group rebalances to its weights", fields...)
	default:
		p.log.Warn("location "+t.State, fields...)
		return
	}
	p.sink.Emit(Event{Time: now, Group: p.group.Name, Type: typ, Location: l.Name, Reason: t.Reason,
		Message: fmt.Sprintf("group %s: location %s is %s (%s); its share is %d", p.group.Name, l.Name, t.State, t.Reason, t.Share)})
}

// Reconcile runs a round in every location that answers, at once. A
// location down or whose API fails is only probed (a list, in the
// background) to see it answer again. A round that runs long (a location
// whose API just stopped answering, its list retrying) goes on in the
// background once the others are done and a poll interval more has
// passed: one location's retries never hold up the others. The group's
// decision sums each location's last.
func (p *Placed) Reconcile(ctx context.Context) (plan.Decision, error) {
	now := p.opts.Now()
	p.connect(ctx)
	p.mu.Lock()
	p.placeAll(now)
	var rounds, probes []*placedLocation
	for _, l := range p.locs {
		switch {
		case l.rec == nil || l.inRound:
		case l.target.Frozen || !l.view.APIFailingSince.IsZero():
			probes = append(probes, l)
		default:
			l.inRound = true
			rounds = append(rounds, l)
		}
	}
	p.mu.Unlock()
	for _, l := range probes {
		p.probe(ctx, l)
	}
	done := make(chan struct{}, len(rounds))
	for _, l := range rounds {
		go func() {
			defer func() { done <- struct{}{} }()
			dec, err := l.rec.Reconcile(ctx)
			if err != nil {
				err = fmt.Errorf("location %s: %w", l.Name, err)
			}
			p.roundEnded(l, dec, err)
		}()
	}
	for finished := 0; finished < len(rounds); {
		var others <-chan time.Time
		if finished > 0 {
			others = time.After(p.opts.PollInterval)
		}
		select {
		case <-done:
			finished++
		case <-others:
			finished = len(rounds) // the rest go on in the background
		case <-ctx.Done():
			finished = len(rounds)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var decs []plan.Decision
	var errs []error
	for _, l := range p.locs {
		if l.rec == nil || l.target.Frozen {
			continue
		}
		decs = append(decs, l.lastDec)
		errs = append(errs, l.lastErr)
	}
	return p.merge(decs), errors.Join(errs...)
}

// roundEnded keeps what a location's round ended with, and what the
// others plan with until its next round: its serving servers (old ones
// too: capacity is capacity, whatever image it runs), not those the round
// took out (deleted, drained, rebuilt), and its servers to replace.
func (p *Placed) roundEnded(l *placedLocation, dec plan.Decision, err error) {
	out := map[string]bool{}
	for _, x := range dec.Deletes {
		out[x.Server.ID] = true
	}
	for _, x := range dec.Drains {
		out[x.Server.ID] = true
	}
	for _, x := range dec.Reimages {
		out[x.Server.ID] = true
	}
	serving := 0
	for _, c := range dec.Servers {
		if c.Available && !out[c.ID] {
			serving++
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	l.inRound = false
	l.lastDec, l.lastErr = dec, err
	if err == nil {
		st := dec.Status
		l.view.Serving, l.view.Pending = serving, st.Old+st.Failed+st.Unhealthy
	}
}

// merge sums the locations' decisions into the group's.
func (p *Placed) merge(decs []plan.Decision) plan.Decision {
	var d plan.Decision
	d.Status.Converged = true
	for _, l := range p.locs {
		if l.target.State != plan.LocationUp {
			d.Status.Converged = false
		}
	}
	d.Status.Desired = p.group.Count
	for _, x := range decs {
		s := &d.Status
		s.Current += x.Status.Current
		s.Available += x.Status.Available
		s.Booting += x.Status.Booting
		s.Old += x.Status.Old
		s.Failed += x.Status.Failed
		s.Deleting += x.Status.Deleting
		s.Draining += x.Status.Draining
		s.Unhealthy += x.Status.Unhealthy
		s.Deferred += x.Status.Deferred
		s.Total += x.Status.Total
		s.Halted = s.Halted || x.Status.Halted
		s.Converged = s.Converged && x.Status.Converged
		if x.RequeueAfter > 0 && (d.RequeueAfter == 0 || x.RequeueAfter < d.RequeueAfter) {
			d.RequeueAfter = x.RequeueAfter
		}
		d.Servers = append(d.Servers, x.Servers...)
		d.Creates = append(d.Creates, x.Creates...)
		d.Deletes = append(d.Deletes, x.Deletes...)
	}
	if len(decs) == 0 {
		d.Status.Converged = false
	}
	return d
}

// Run reconciles as GroupReconciler.Run does, waking on a health change in
// any location.
func (p *Placed) Run(ctx context.Context, l Loop) error {
	return runLoop(ctx, l, p.Reconcile, p.changes)
}

// LocationStatus is one location of a placed group, for status and metrics.
type LocationStatus struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Weight  int    `json:"weight"`
	Share   int    `json:"share"`
	Count   int    `json:"count"`
	Servers int    `json:"servers"`
	Serving int    `json:"serving"`
}

// Locations says where each location stands.
func (p *Placed) Locations() []LocationStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []LocationStatus
	for _, l := range p.locs {
		s := LocationStatus{Name: l.Name, State: l.target.State, Reason: l.target.Reason, Weight: l.Weight,
			Share: l.target.Share, Count: l.target.Count, Serving: l.view.Serving}
		if l.rec != nil {
			s.Servers = len(l.rec.Seen())
		}
		if !l.view.Listed {
			s.Serving = 0
		}
		out = append(out, s)
	}
	return out
}
