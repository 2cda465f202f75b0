package controller

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Target is the desired state of one group, with every name already
// resolved and every percentage already rounded.
type Target struct {
	Count          int
	MaxSurge       int
	MaxUnavailable int
	MinReady       time.Duration
	ImageID        string
	Revision       string
	// RebuildBefore, when set, makes every server created before it drift:
	// a forced rebuild of a group that is otherwise up to date.
	RebuildBefore time.Time
	RebuildReason string
	// Zones are the availability zones to spread new servers across.
	Zones []string
	// Forces are rebuilds asked for by events (a security patch, a
	// compromised server): the servers they designate drift.
	Forces []Force
	// ProgressDeadline is how long a new server may take from its create
	// to ready; one that takes longer has failed. 0: no deadline.
	ProgressDeadline time.Duration
	// Canary servers are replaced first and must have served CanaryBake
	// before the rest follow; with PauseAfterCanary the rest wait until
	// CanaryPromoted (`phoenix resume`).
	Canary           int
	CanaryBake       time.Duration
	PauseAfterCanary bool
	CanaryPromoted   bool
	// MaxAge, when above zero, makes servers older than it drift; each
	// server's limit is brought forward by up to a fifth, by a hash of its
	// ID, to spread the replacements of servers built together.
	MaxAge time.Duration
	// MaxUnhealthy is how many servers may be unhealthy at once for
	// auto-heal to act; more, and nothing is replaced for health (the
	// fault is likely the network or the check). Negative: no heal.
	MaxUnhealthy int
	// HealAfter is how long a server must have been unhealthy before it
	// is healed: failures that begin together (a network fault) are then
	// counted together against MaxUnhealthy, not healed one by one.
	HealAfter time.Duration
	// Halted, when set, says why the rollout to this image and revision
	// halted: nothing new is created, no old server is touched, and new
	// servers that do not serve are removed.
	Halted string
	// Traffic is set when Phoenix moves the group's traffic itself (a
	// pool, a floating IP): a server then counts as available only once
	// it serves, and an ACTIVE server leaves through a drain of Drain.
	// SingleTraffic means one server at a time can hold the traffic (a
	// floating IP).
	Traffic       bool
	SingleTraffic bool
	Drain         time.Duration
	// Stateful is set when the group's data volumes move from each old
	// server to its replacement: a current server serves only once it
	// holds one, an old server that holds one goes only once a handover
	// moved it, and each handover in flight (InFlight) costs a unit of
	// MaxUnavailable, its old server being stopped.
	Stateful bool
	InFlight []InFlight
	// FreeVolumes are data volumes on no server and going nowhere: each
	// is placed on a new server that holds none.
	FreeVolumes []string
	// RebuildInPlace is set for rollout.strategy rebuild: an old server of the
	// desired revision is reimaged in place (Nova's rebuild) rather than
	// replaced; one of another revision is still replaced.
	RebuildInPlace bool
}

// TrafficState is where a server stands with the group's traffic.
type TrafficState int

const (
	// TrafficNone: no member in the pool, or the floating IP points
	// elsewhere.
	TrafficNone TrafficState = iota
	// TrafficPending: the member is being configured, or the pool's
	// monitor has not seen it healthy yet.
	TrafficPending
	// TrafficServing: the load balancer sends it new requests.
	TrafficServing
	// TrafficDrained: the member is at weight 0.
	TrafficDrained
	// TrafficBroken: the member is in ERROR.
	TrafficBroken
)

func (s TrafficState) String() string {
	return [...]string{"none", "pending", "serving", "drained", "broken"}[s]
}

// Server is one live server of the group as the plan sees it.
type Server struct {
	ID        string
	Name      string
	Status    string
	TaskState string
	Zone      string
	ImageID   string
	Revision  string
	// Created is Phoenix's own creation time when it recorded one, Nova's
	// otherwise.
	Created time.Time
	Phase   string
	// Reason is the reason recorded with the phase.
	Reason string
	// RebuildMark is the reason an event recorded on the server for its
	// replacement (MetaRebuild), Compromised the reason it was found
	// compromised (MetaCompromised).
	RebuildMark, Compromised string
	// WasReady is true for a server known to have served once (recorded
	// on it): it is never taken for a boot that missed its deadline.
	WasReady bool
	Fault    string
	// Health is the health checker's verdict and HealthySince when it last
	// became healthy; HealthError says why the last probe failed.
	Health       healthcheck.State
	HealthySince time.Time
	// UnhealthySince is when it became unhealthy (zero otherwise).
	UnhealthySince time.Time
	HealthError    string
	// WatchedSince is when this controller first listed the server (zero
	// when unknown). A server is failed on its progress deadline only
	// once it was watched that long: a daemon that starts after a
	// replacement's deadline passed (it was down) knows nothing of its
	// health yet and must look before it judges.
	WatchedSince time.Time
	// Traffic is where the server stands with the group's traffic, and
	// DrainStart when its drain was recorded (zero when none was).
	Traffic    TrafficState
	DrainStart time.Time
	// DrainThen is what follows its drain (MetaDrainThen).
	DrainThen string
	// Volumes are the volumes attached to it; StatefulVolumes those of
	// them that are the group's data volumes.
	Volumes, StatefulVolumes []string
	// Unlisted marks a server this controller created moments ago that the
	// last list did not show: a real Nova paging with markers can miss a
	// server while it is being scheduled. It counts (so it is not created
	// twice over) but is never acted on.
	Unlisted bool
}

// Kind sorts a server into the part it plays in a rollout.
type Kind int

const (
	// KindCurrent is a server of the desired image and revision.
	KindCurrent Kind = iota
	// KindOld has drifted and waits to be replaced.
	KindOld
	// KindFailed is in ERROR: it serves nothing and is removed freely.
	KindFailed
	// KindDeleting is on its way out (its delete was decided).
	KindDeleting
	// KindDraining takes no new requests and finishes the ones it has;
	// its delete follows the drain.
	KindDraining
)

func (k Kind) String() string {
	return [...]string{"current", "old", "failed", "deleting", "draining"}[k]
}

// Classified is a server with the plan's verdict on it.
type Classified struct {
	Server
	Kind Kind
	// Reason says why an old server drifted or what failed.
	Reason string
	// Ready is true for an ACTIVE server that has been healthy for
	// MinReady. Available is Ready and, when Phoenix moves the traffic,
	// serving it: it counts towards the group's capacity.
	Ready     bool
	Available bool
}

// Create asks for one new server.
type Create struct {
	Zone string
}

// Delete asks for one server to go.
type Delete struct {
	Server Classified
	Reason string
	// Resume is set when the delete was decided before (the phase is on
	// the server) but the cloud shows no delete in progress: a crash or a
	// lost request came between the two.
	Resume bool
}

// Handover asks for a data volume to move from an old server to a new one
// (stateful groups).
type Handover struct {
	Volume   string
	From, To Classified
}

// InFlight is a handover recorded on its volume and not finished: it
// costs a unit of unavailability until it is.
type InFlight struct {
	Volume, From, To, Step string
}

// Reimage asks for a server to be reimaged in place with the desired image
// (strategy rebuild): the phase is recorded on it first, then Nova's
// rebuild is requested.
type Reimage struct {
	Server Classified
	Reason string
	// Resume is set when the rebuild was recorded before but Nova shows
	// the old image still: the request is sent again.
	Resume bool
}

// Drain asks for a server to stop taking new requests: its drain start is
// recorded on it, then its member goes to weight 0.
type Drain struct {
	Server Classified
	Reason string
	// Resume is set when the drain was recorded before but the member
	// still takes requests: only the weight is set again, and the drain
	// keeps its recorded start.
	Resume bool
	// Until is when the drain ends and the server may go.
	Until time.Time
	// Then is DrainThenRebuild when the server is rebuilt in place after
	// its drain rather than deleted.
	Then string
}

// Decision is what one reconcile of one group does next.
type Decision struct {
	Servers []Classified
	Creates []Create
	Deletes []Delete
	// AddTraffic lists ready servers to put into the traffic (a pool
	// member, the floating IP); Drains the servers to take out of it.
	AddTraffic []Classified
	Drains     []Drain
	Reimages   []Reimage
	// Handovers are the data volumes to move now, each from an old server
	// to a new one that holds none.
	Handovers    []Handover
	Status       Status
	RequeueAfter time.Duration
}

// Status counts a group's servers by the part they play.
type Status struct {
	Desired   int  `json:"desired"`
	Current   int  `json:"current"`
	Available int  `json:"available"`
	Booting   int  `json:"booting"`
	Old       int  `json:"old"`
	Failed    int  `json:"failed"`
	Deleting  int  `json:"deleting"`
	Draining  int  `json:"draining,omitempty"`
	Halted    bool `json:"halted,omitempty"`
	// Unhealthy counts ACTIVE servers failing their check; HealBlocked is
	// set when they are more than MaxUnhealthy, so none is replaced.
	Unhealthy   int  `json:"unhealthy,omitempty"`
	HealBlocked bool `json:"heal_blocked,omitempty"`
	// Canary is set while the canaries are replaced and bake; Paused
	// while the rest wait for `phoenix resume`.
	Canary bool `json:"canary,omitempty"`
	Paused bool `json:"paused,omitempty"`
	// Handovers counts data volumes on their way to a replacement.
	Handovers int  `json:"handovers,omitempty"`
	Total     int  `json:"total"`
	Converged bool `json:"converged"`
}

// Plan decides the next steps of one group. It is pure: no I/O, no clock
// but now, so the rollout policy is tested with tables and random
// sequences rather than with a cloud.
//
// The rules, in the order applied:
//
//  1. Servers in ERROR serve nothing; they are deleted at once.
//  2. Old servers (and current ones beyond Count) are deleted only within
//     the availability budget: capacity after the deletes, counting only
//     the servers seen serving and each deleted one as serving unless it
//     is known to serve nothing (the worst case both ways, so an old
//     server whose health is not yet known is neither counted on nor
//     gambled with), stays at or above Count−MaxUnavailable. With MaxUnavailable 0 this means an old server
//     goes only once a replacement is available — replace before remove.
//  3. New servers are created, pipelined rather than batched: as many as
//     are missing, within Count+MaxSurge counting every server that still
//     exists (booting, failed, draining and deleting ones included).
//
// When Phoenix moves the traffic (Target.Traffic), a ready server is put
// into it and counts as available only once it serves; an ACTIVE server
// that rule 2 removes is drained first — recorded, weight 0 — and deleted
// once Drain has passed since the recorded start, which a restart keeps.
func Plan(t Target, servers []Server, now time.Time) Decision {
	var d Decision
	d.Status.Desired = t.Count
	d.Status.Handovers = len(t.InFlight)

	// Auto-heal: a server that served and now fails its check is replaced
	// like a drifted one — surge-first, within the same budget as a
	// rollout — unless so many fail at once that the check or the network
	// is the likelier fault.
	for _, s := range servers {
		if s.Status == provisioner.StatusActive && s.Health == healthcheck.Unhealthy && s.Phase == "" && s.TaskState == "" {
			d.Status.Unhealthy++
		}
	}
	heal := t.MaxUnhealthy >= 0 && d.Status.Unhealthy <= t.MaxUnhealthy
	d.Status.HealBlocked = t.MaxUnhealthy >= 0 && d.Status.Unhealthy > t.MaxUnhealthy

	var current, old, retry []Classified
	for _, s := range servers {
		c := classify(t, s, now)
		if heal && c.Kind == KindCurrent && s.WasReady && s.Status == provisioner.StatusActive && s.Health == healthcheck.Unhealthy &&
			!now.Before(s.UnhealthySince.Add(t.HealAfter)) {
			c.Kind = KindOld
			c.Reason = "unhealthy: failed its health check after serving"
			if s.HealthError != "" {
				c.Reason += ": " + s.HealthError
			}
		}
		d.Servers = append(d.Servers, c)
		d.Status.Total++
		switch c.Kind {
		case KindDraining:
			d.Status.Draining++
			until := c.DrainStart.Add(t.Drain)
			switch {
			case !now.Before(until) && c.DrainThen == DrainThenRebuild && t.RebuildInPlace && c.Revision == t.Revision:
				d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: "drained: " + c.Reason})
			case !now.Before(until):
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "drained: " + c.Reason})
			case c.Traffic == TrafficServing || c.Traffic == TrafficPending:
				d.Drains = append(d.Drains, Drain{Server: c, Reason: c.Reason, Resume: true, Until: until})
			}
		case KindDeleting:
			d.Status.Deleting++
			if s.Phase == PhaseDeleting && s.TaskState != provisioner.TaskDeleting {
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "resume the delete decided earlier", Resume: true})
			}
		case KindFailed:
			d.Status.Failed++
			if failedInPlace(t, c) {
				// Deleting it would lose what strategy rebuild keeps (its
				// id, addresses, volumes): it is rebuilt again below, and
				// counts against the failure budget each time.
				retry = append(retry, c)
				continue
			}
			d.Deletes = append(d.Deletes, Delete{Server: c, Reason: c.Reason})
		case KindOld:
			d.Status.Old++
			old = append(old, c)
		case KindCurrent:
			d.Status.Current++
			current = append(current, c)
			switch {
			case c.Available:
				d.Status.Available++
			case s.Status != provisioner.StatusActive:
				d.Status.Booting++
			}
		}
	}

	if t.Halted != "" {
		// Keep what serves; remove new servers that do not; start
		// nothing.
		d.Status.Halted = true
		for _, c := range current {
			// New servers that never served: a server that did and is
			// unhealthy now is not the halt's to remove.
			// A server rebuilt in place stays: it is one of the group's, with
			// the addresses the operator relies on.
			if !c.Ready && !c.WasReady && !c.Unlisted && !(t.RebuildInPlace && c.Phase == PhaseRebuilding) && !handingTo(t, c.ID) {
				d.Deletes = append(d.Deletes, Delete{Server: c, Reason: "rollout halted: " + t.Halted})
			}
		}
		if t.Traffic {
			// What serves stays in the traffic, an old server back from a
			// handover that was rolled back included.
			d.AddTraffic = addTraffic(t, append(slices.Clone(current), returning(t, old)...), nil, d.Deletes)
		}
		d.RequeueAfter = requeueAfter(t, d.Servers, now)
		return d
	}

	for _, c := range retry {
		d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: "rebuild again, the last one " + c.Reason})
	}

	minAvailable := t.Count - t.MaxUnavailable
	// Capacity counts only the servers seen serving; the budget is what
	// it has above the floor. Removing one of them costs a unit.
	// Removing a server whose serving is not known (its health not seen
	// yet after a restart, one booted moments ago from a stale image)
	// takes nothing from that capacity, so it is allowed while the
	// capacity holds the floor — but never below it, where the real
	// capacity may be all that stands. A server known to serve nothing
	// costs nothing. An old server stopped for a handover in flight costs
	// its unit until the handover ends.
	servingOld := 0
	for _, c := range old {
		if c.Available {
			servingOld++
		}
	}
	budget := servingOld + d.Status.Available - minAvailable - handoverCost(t)
	if bugOn(BugEarlyDelete) {
		budget = len(old)
	}

	// Canary: while fewer than Canary new servers have served for
	// CanaryBake, the rollout replaces only that many old ones; then it
	// goes on, or holds for `phoenix resume`.
	maxCurrent := t.Count
	var bakeEnd time.Time
	if t.Canary > 0 && len(old) > 0 {
		baked := 0
		for _, c := range current {
			if end := c.HealthySince.Add(t.CanaryBake); c.Available && !c.HealthySince.IsZero() {
				if !now.Before(end) {
					baked++
				} else if bakeEnd.IsZero() || end.Before(bakeEnd) {
					bakeEnd = end
				}
			}
		}
		switch {
		case baked < t.Canary:
			d.Status.Canary = true
			maxCurrent = t.Canary
			budget = min(budget, len(old)-(t.Count-t.Canary))
		case t.PauseAfterCanary && !t.CanaryPromoted:
			d.Status.Paused = true
			maxCurrent = len(current)
			budget = 0
		}
	}

	sort.SliceStable(old, func(i, j int) bool { return deleteFirst(old[i], old[j]) })
	// A rebuild recorded before goes first: it was already counted.
	sort.SliceStable(old, func(i, j int) bool { return old[i].Phase == PhaseRebuilding && old[j].Phase != PhaseRebuilding })
	// Old servers to be rebuilt in place, and draining ones to be rebuilt
	// once drained, become current by themselves: none is created for
	// them.
	inPlace := 0
	for _, c := range d.Servers {
		if (c.Kind == KindOld || c.Kind == KindDraining && c.DrainThen == DrainThenRebuild) && rebuildsInPlace(t, c) || failedInPlace(t, c) && c.Kind == KindFailed {
			inPlace++
		}
	}
	for _, c := range old {
		cost := 0
		switch {
		case servesNothing(c):
		case c.Available:
			if budget <= 0 {
				continue
			}
			cost = 1
		case budget < 0:
			continue
		}
		if c.Unlisted || t.Stateful && (len(c.StatefulVolumes) > 0 || handingFrom(t, c.ID)) {
			// A server holding data goes only once a handover moved it
			// away and ended: until then a rollback may need it.
			continue
		}
		budget -= cost
		if rebuildsInPlace(t, c) {
			d.rebuild(t, c, now)
			continue
		}
		d.remove(t, c, c.Reason, now)
	}

	// Current servers beyond Count (a duplicate left by a create whose
	// answer was lost, or a smaller Count): the ones not yet serving go
	// first and cost nothing; serving ones only within the budget.
	if surplus := len(current) - t.Count; surplus > 0 {
		sort.SliceStable(current, func(i, j int) bool { return surplusFirst(current[i], current[j]) })
		for _, c := range current[:surplus] {
			if c.Unlisted {
				continue
			}
			if c.Available {
				if budget <= 0 {
					continue
				}
				budget--
			}
			d.remove(t, c, fmt.Sprintf("surplus: the group has %d current servers for a count of %d", len(current), t.Count), now)
		}
	}

	if t.Stateful {
		d.Handovers = planHandovers(t, old, current, &budget)
	}

	if t.Traffic {
		d.AddTraffic = addTraffic(t, append(slices.Clone(current), returning(t, old)...), d.Drains, d.Deletes)
	}

	// An old server rebuilt in place becomes a current one by itself.
	missing := min(t.Count, maxCurrent) - len(current) - inPlace
	room := t.Count + t.MaxSurge - d.Status.Total
	if bugOn(BugSurgeIgnored) {
		room = missing
	}
	for _, zone := range pickZones(t.Zones, current, min(missing, room)) {
		d.Creates = append(d.Creates, Create{Zone: zone})
	}

	d.Status.Converged = d.Status.Current == t.Count && d.Status.Available == t.Count && d.Status.Total == t.Count && len(t.InFlight) == 0
	d.RequeueAfter = requeueAfter(t, d.Servers, now)
	if wait := bakeEnd.Sub(now); d.Status.Canary && wait > 0 && (d.RequeueAfter == 0 || wait < d.RequeueAfter) {
		d.RequeueAfter = wait
	}
	return d
}

// servesNothing says whether a server is known to serve nothing: not
// ACTIVE, or failing its health check. Removing it costs no capacity.
func servesNothing(c Classified) bool {
	return c.Status != provisioner.StatusActive || c.Health == healthcheck.Unhealthy
}

// rebuildsInPlace says whether an old server is reimaged rather than
// replaced: with strategy rebuild, when only its image (or its age, or a
// request to rebuild it) drifted — a new flavor or network needs a new
// server.
// failedInPlace says whether a failed server is one rebuilt in place, to
// be rebuilt again rather than replaced.
func failedInPlace(t Target, c Classified) bool {
	return t.RebuildInPlace && c.Phase == PhaseRebuilding && c.Revision == t.Revision && c.Compromised == ""
}

func rebuildsInPlace(t Target, c Classified) bool {
	return t.RebuildInPlace && c.Revision == t.Revision && c.Status != provisioner.StatusError
}

// rebuild reimages a server in place: a drain first when it may be
// serving requests that Phoenix routes (a pool; a floating IP stays with
// the server), the rebuild otherwise.
func (d *Decision) rebuild(t Target, c Classified, now time.Time) {
	if c.Phase == PhaseRebuilding {
		d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: c.Reason, Resume: true})
		return
	}
	if t.Traffic && !t.SingleTraffic && c.Status == provisioner.StatusActive {
		d.Drains = append(d.Drains, Drain{Server: c, Reason: c.Reason, Until: now.Add(t.Drain), Then: DrainThenRebuild})
		return
	}
	d.Reimages = append(d.Reimages, Reimage{Server: c, Reason: c.Reason})
}

// remove takes a server out: a drain first when it may be serving
// requests that Phoenix routes, its delete otherwise.
func (d *Decision) remove(t Target, c Classified, reason string, now time.Time) {
	if t.Traffic && c.Status == provisioner.StatusActive {
		d.Drains = append(d.Drains, Drain{Server: c, Reason: reason, Until: now.Add(t.Drain)})
		return
	}
	d.Deletes = append(d.Deletes, Delete{Server: c, Reason: reason})
}

// addTraffic picks the ready current servers that should serve and do
// not: every one of them for a pool, one for a floating IP (and only when
// no current server holds it or is taking it).
func addTraffic(t Target, current []Classified, drains []Drain, deletes []Delete) []Classified {
	leaving := map[string]bool{}
	for _, dr := range drains {
		leaving[dr.Server.ID] = true
	}
	for _, de := range deletes {
		leaving[de.Server.ID] = true
	}
	var out []Classified
	for _, c := range current {
		if t.SingleTraffic && (c.Traffic == TrafficServing || c.Traffic == TrafficPending) {
			return nil
		}
		if !c.Ready || leaving[c.ID] || c.Unlisted {
			continue
		}
		switch c.Traffic {
		case TrafficNone, TrafficDrained, TrafficBroken:
			out = append(out, c)
		}
	}
	if t.SingleTraffic && len(out) > 1 {
		// The newest ready server: the one that will stay longest.
		sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
		out = out[:1]
	}
	return out
}

func classify(t Target, s Server, now time.Time) Classified {
	c := Classified{Server: s}
	switch {
	case s.Phase == PhaseDeleting || s.TaskState == provisioner.TaskDeleting:
		c.Kind = KindDeleting
		c.Reason = "being deleted"
	case s.Phase == PhaseDraining && s.Status != provisioner.StatusError:
		c.Kind = KindDraining
		c.Reason = "draining"
		if s.Reason != "" {
			c.Reason = s.Reason
		}
	case s.Compromised != "":
		// Out of the traffic already, and not to be trusted: it goes at
		// once, like a failed server, without waiting for its
		// replacement.
		c.Kind = KindFailed
		c.Reason = "compromised: " + s.Compromised
	case s.Status == provisioner.StatusError && !s.Unlisted:
		c.Kind = KindFailed
		c.Reason = "failed: server is in ERROR"
		if s.Fault != "" {
			c.Reason += ": " + s.Fault
		}
	default:
		if r := cmp.Or(Drift(t, s), tooOld(t, s, now)); r != "" {
			c.Kind = KindOld
			c.Reason = r
		} else {
			c.Kind = KindCurrent
		}
		c.Ready = s.Status == provisioner.StatusActive &&
			s.Health == healthcheck.Healthy &&
			!now.Before(s.HealthySince.Add(t.MinReady))
		c.Available = c.Ready && (!t.Traffic || s.Traffic == TrafficServing) && (!t.Stateful || len(s.StatefulVolumes) > 0)
		if c.Kind == KindCurrent && t.ProgressDeadline > 0 && !c.Ready && !s.WasReady && !s.Unlisted &&
			now.Sub(s.Created) > t.ProgressDeadline && now.Sub(s.WatchedSince) > t.ProgressDeadline {
			c.Kind = KindFailed
			c.Reason = fmt.Sprintf("failed: not ready %s after its create (status %s, health %s)", t.ProgressDeadline, s.Status, s.Health)
			if s.HealthError != "" {
				c.Reason += ": " + s.HealthError
			}
		}
	}
	return c
}

// tooOld says why a server has outlived the group's max_age, or "".
func tooOld(t Target, s Server, now time.Time) string {
	if t.MaxAge <= 0 || s.Created.IsZero() || s.Unlisted {
		return ""
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(s.ID))
	early := time.Duration(float64(t.MaxAge/5) * float64(h.Sum32()) / float64(math.MaxUint32))
	if limit := t.MaxAge - early; now.Sub(s.Created) >= limit {
		return fmt.Sprintf("age: created %s, older than max_age %s (this server's turn comes at %s)",
			s.Created.UTC().Format(time.RFC3339), t.MaxAge, limit.Round(time.Minute))
	}
	return ""
}

// deleteFirst orders old servers for removal: the ones serving least go
// first (not ACTIVE, then unhealthy, then health unknown, then healthy),
// the oldest first within each.
func deleteFirst(a, b Classified) bool {
	ra, rb := servingRank(a), servingRank(b)
	if ra != rb {
		return ra < rb
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.ID < b.ID
}

func servingRank(c Classified) int {
	switch {
	case c.Status != provisioner.StatusActive:
		return 0
	case c.Health == healthcheck.Unhealthy:
		return 1
	case c.Health == healthcheck.Unknown:
		return 2
	case !c.Available:
		return 3
	}
	return 4
}

// surplusFirst orders current servers for removal when there are too
// many: not serving before serving, then the newest first (it has done the
// least work and its boot is the likeliest duplicate).
func surplusFirst(a, b Classified) bool {
	ra, rb := servingRank(a), servingRank(b)
	if ra != rb {
		return ra < rb
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.ID > b.ID
}

// pickZones spreads n new servers across zones, each to the zone that has
// the fewest current servers so far (ties to the first listed).
func pickZones(zones []string, current []Classified, n int) []string {
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	if len(zones) == 0 {
		for range n {
			out = append(out, "")
		}
		return out
	}
	load := make(map[string]int, len(zones))
	for _, c := range current {
		load[c.Zone]++
	}
	for range n {
		best := zones[0]
		for _, z := range zones[1:] {
			if load[z] < load[best] {
				best = z
			}
		}
		load[best]++
		out = append(out, best)
	}
	return out
}

// trafficPoll is how soon a reconcile looks again while a member is being
// configured or waits for the pool's monitor to see it healthy.
const trafficPoll = 250 * time.Millisecond

// requeueAfter is how soon the plan may change on its own: when the
// first healthy current server reaches MinReady, a drain ends, or a
// member being set up may be serving.
func requeueAfter(t Target, servers []Classified, now time.Time) time.Duration {
	var next time.Duration
	soonest := func(wait time.Duration) {
		if wait > 0 && (next == 0 || wait < next) {
			next = wait
		}
	}
	for _, c := range servers {
		if c.Kind == KindDraining {
			soonest(max(c.DrainStart.Add(t.Drain).Sub(now), time.Millisecond))
			continue
		}
		if c.Kind == KindCurrent && c.Ready && c.Traffic == TrafficPending {
			soonest(trafficPoll)
		}
		if c.Kind == KindCurrent && c.Health == healthcheck.Unhealthy && !c.UnhealthySince.IsZero() {
			soonest(c.UnhealthySince.Add(t.HealAfter).Sub(now))
		}
	}
	for _, c := range servers {
		if c.Kind != KindCurrent || c.Available || c.Health != healthcheck.Healthy || c.Status != provisioner.StatusActive {
			continue
		}
		soonest(c.HealthySince.Add(t.MinReady).Sub(now))
	}
	return next
}
