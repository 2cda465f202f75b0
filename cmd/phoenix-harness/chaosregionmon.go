package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// regionMonitor judges the groups placed over the seed's regions, from
// every region's own truth (servers, request logs):
//
//	bound         over the regions not down, servers ≤ count + max_surge. A
//	              region is down from the moment the harness takes it down
//	              until it is back and Phoenix had a chance to see it: a
//	              list of it answered (after a server created there since
//	              served, for refused creates), then two lists of every
//	              other region, a whole round of each. Back with its old
//	              servers, the group may be above the bound: it must then
//	              not grow until it is within again.
//	availability  healthy servers over every region ≥ count − max_unavailable
//	              (partitioned servers keep serving)
//	no orphans    every server of every region carries its group tag
//	frozen        no delete of a group's server reaches a region while the
//	              daemon shows that location down (from a whole round of
//	              the location after it showed it so)
//
// and, at the end (placedWhyNot), every location up and the group at its
// weights on each region's newest image.
type regionMonitor struct {
	regions []*sim.Sim
	groups  map[string]chaosGroup
	// open counts the outages open per group and region; creates says
	// one of them refused creates; pending are those ended and not yet
	// seen by Phoenix.
	open    map[regionKey]int
	creates map[regionKey]bool
	pending map[regionKey]pendingBack
	// ceiling is each group's ceiling now: count + max_surge, or more
	// while a region back with its servers holds it above; rejoined
	// says a region of the group was seen back since the last sample.
	ceiling  map[string]int
	rejoined map[string]bool
	// ids are the servers each region held, by group.
	ids []map[string]string
	// down are the daemon's down spans per group and location, open the
	// ones still shown.
	down     []downSpan
	openDown map[string]*downSpan
	lastSeen time.Time
	// phoenixOut are the locations the daemon itself shows down or
	// retrying (a 429 burst or boots to ERROR can make it so): outside
	// the bound as well, until seen back.
	phoenixOut map[regionKey]bool
	// outAt are the polls that showed each location down or retrying;
	// over are the samples above the ceiling, judged once the polls
	// around them are in (the daemon acts before its status says why).
	outAt map[regionKey][]time.Time
	over  []overSample
}

// overSample is a sample of a group above its ceiling.
type overSample struct {
	group          string
	at             time.Time
	per            []int
	total, ceiling int
}

// statusLag is how long the daemon's status may trail what it does: a
// poll every 100ms, and a round acting on its state at once.
const statusLag = 500 * time.Millisecond

type regionKey struct {
	group  string
	region int
}

type pendingBack struct {
	at      time.Time
	creates bool
}

// downSpan is a location the daemon showed down from the first poll to
// the last.
type downSpan struct {
	group, location, daemon string
	from, last              time.Time
}

// watchRegions has the monitor judge the placed groups and starts
// watching the daemon's locations; a seed of one region does nothing.
func (r *seedRun) watchRegions() {
	if r.regions == nil {
		return
	}
	rg := &regionMonitor{groups: map[string]chaosGroup{}, open: map[regionKey]int{}, creates: map[regionKey]bool{}, pending: map[regionKey]pendingBack{},
		ceiling: map[string]int{}, rejoined: map[string]bool{}, openDown: map[string]*downSpan{}, phoenixOut: map[regionKey]bool{}, outAt: map[regionKey][]time.Time{}}
	rg.regions = r.regionSims()
	for range rg.regions {
		rg.ids = append(rg.ids, map[string]string{})
	}
	for _, g := range r.groups {
		if g.placed != nil {
			rg.groups[g.name] = g
			rg.ceiling[g.name] = g.count + g.surge
		}
	}
	r.mon.rg = rg
	r.watchLocations()
}

func (rg *regionMonitor) index(region string) int {
	for i, s := range rg.regions {
		if s.RegionName() == region {
			return i
		}
	}
	return -1
}

func (rg *regionMonitor) excluded(k regionKey) bool {
	_, p := rg.pending[k]
	return rg.open[k] > 0 || p || rg.phoenixOut[k]
}

// locationsOut is a poll of the daemon: the locations it shows down or
// retrying. One it no longer shows so is pending until seen back, as
// after an outage of the harness's (its creates may have failed).
func (m *chaosMonitor) locationsOut(out map[string]bool, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rg := m.rg
	for k, is := range out {
		group, loc, _ := strings.Cut(k, " ")
		key := regionKey{group, rg.index(loc)}
		if key.region < 0 {
			continue
		}
		if was := rg.phoenixOut[key]; was && !is {
			// Before taking it off: the sample must not see it included.
			if _, p := rg.pending[key]; !p && rg.open[key] == 0 {
				rg.pending[key] = pendingBack{at: at}
			}
		}
		rg.phoenixOut[key] = is
		if is {
			rg.outAt[key] = append(rg.outAt[key], at)
		}
	}
}

// shownOut says whether a poll within statusLag of at showed location i
// of group out.
func (rg *regionMonitor) shownOut(group string, i int, at time.Time) bool {
	for _, t := range rg.outAt[regionKey{group, i}] {
		if d := t.Sub(at); d > -statusLag && d < statusLag {
			return true
		}
	}
	return false
}

// judgeOver judges the samples above their ceiling whose polls are in:
// servers of a location the daemon showed out about then do not count.
// final judges them all. Call with m.mu held.
func (m *chaosMonitor) judgeOver(now time.Time, final bool) {
	rg := m.rg
	keep := rg.over[:0]
	for _, o := range rg.over {
		if !final && now.Sub(o.at) < statusLag {
			keep = append(keep, o)
			continue
		}
		total := o.total
		for i, n := range o.per {
			if rg.shownOut(o.group, i, o.at) {
				total -= n
			}
		}
		if total > o.ceiling {
			g := rg.groups[o.group]
			m.violate("bound", o.group, "%d servers in the regions not down (by region %v), above %d (count %d + max_surge %d, or what a region back held)",
				total, o.per, o.ceiling, g.count, g.surge)
		}
	}
	rg.over = keep
}

// regionOut tells the monitor a region goes down; call it before.
func (m *chaosMonitor) regionOut(region, kind string) {
	if m.rg == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.rg.index(region)
	for g := range m.rg.groups {
		k := regionKey{g, i}
		m.rg.open[k]++
		delete(m.rg.pending, k)
		m.rg.creates[k] = m.rg.creates[k] || kind == outageCreates
	}
}

// regionBack tells the monitor a region's outage ended at at.
func (m *chaosMonitor) regionBack(region, kind string, at time.Time) {
	if m.rg == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.rg.index(region)
	for g := range m.rg.groups {
		k := regionKey{g, i}
		if m.rg.open[k]--; m.rg.open[k] == 0 {
			m.rg.pending[k] = pendingBack{at: at, creates: m.rg.creates[k]}
			m.rg.creates[k] = false
		}
	}
}

// locationsDown is a poll of the live daemons: the group and location
// pairs shown down, each with the daemon that shows it (with replicas, the
// group's owner). Spans not shown, or shown by another daemon, end.
func (m *chaosMonitor) locationsDown(down map[string]string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rg := m.rg
	for k, sp := range rg.openDown {
		if url, ok := down[k]; !ok || sp.daemon != url {
			rg.down = append(rg.down, *sp)
			delete(rg.openDown, k)
		}
	}
	for k, url := range down {
		if sp := rg.openDown[k]; sp != nil {
			sp.last = at
			continue
		}
		group, loc, _ := strings.Cut(k, " ")
		rg.openDown[k] = &downSpan{group: group, location: loc, daemon: url, from: at, last: at}
	}
}

// seenEvery is how often the monitor looks for Phoenix having seen a
// region back (it reads the request logs).
const seenEvery = 20 * time.Millisecond

// sampleRegions judges the placed groups; primary is the primary's
// server list of this sample. Call with m.mu held.
func (m *chaosMonitor) sampleRegions(primary []sim.Server, at time.Time) {
	rg := m.rg
	lists := [][]sim.Server{primary}
	for _, s := range rg.regions[1:] {
		lists = append(lists, s.Servers())
	}
	for i, list := range lists[1:] {
		for _, s := range list {
			if groupOfServer(s) == "" {
				m.violate("orphan", s.Metadata["phoenix:group"], "server %s (%s) in %s carries no group tag", s.Name, s.ID, rg.regions[i+1].RegionName())
			}
		}
	}
	m.judgeOver(at, false)
	if len(rg.pending) > 0 && at.Sub(rg.lastSeen) >= seenEvery {
		rg.lastSeen = at
		rg.seen(lists)
	}
	for name, g := range rg.groups {
		total, healthy := 0, 0
		per := make([]int, len(lists))
		for i, list := range lists {
			for _, s := range list {
				if groupOfServer(s) != name {
					continue
				}
				rg.ids[i][s.ID] = name
				per[i]++
				if s.Healthy {
					healthy++
				}
			}
			if !rg.excluded(regionKey{name, i}) {
				total += per[i]
			}
		}
		bound := g.count + g.surge
		ceiling := rg.ceiling[name]
		if rg.rejoined[name] {
			// Back with its servers: above the bound, what is there may
			// stay, and must not grow.
			ceiling = max(ceiling, total)
			rg.rejoined[name] = false
		}
		if total > ceiling {
			// Counted only once the daemon's status of about now is in.
			inc := make([]int, len(per))
			for i := range per {
				if !rg.excluded(regionKey{name, i}) {
					inc[i] = per[i]
				}
			}
			rg.over = append(rg.over, overSample{group: name, at: at, per: inc, total: total, ceiling: ceiling})
		}
		rg.ceiling[name] = max(bound, min(ceiling, total))
		if floor := g.count - g.unavailable; m.armed && healthy < floor {
			m.violate("availability", name, "%d healthy servers over the regions (by region %v), below count %d − max_unavailable %d", healthy, per, g.count, g.unavailable)
		}
	}
}

// seen ends the outages Phoenix had a chance to see ended: a list of the
// region answered after it was back (for refused creates: after a server
// of the group created there since became ACTIVE), then two lists of
// every other region not down answered after that. Call with m.mu held.
func (rg *regionMonitor) seen(lists [][]sim.Server) {
	logs := map[int][]sim.Request{}
	log := func(i int) []sim.Request {
		if _, ok := logs[i]; !ok {
			logs[i] = rg.regions[i].Requests()
		}
		return logs[i]
	}
	for k, p := range rg.pending {
		from := p.at
		if p.creates {
			var active time.Time
			for _, s := range lists[k.region] {
				if groupOfServer(s) == k.group && s.Created.After(p.at) && !s.ActiveAt.IsZero() && (active.IsZero() || s.ActiveAt.Before(active)) {
					active = s.ActiveAt
				}
			}
			if active.IsZero() {
				continue
			}
			from = active
		}
		listed := nthList(log(k.region), from, 1)
		if listed.IsZero() {
			continue
		}
		all := true
		for j := range rg.regions {
			if j != k.region && !rg.excluded(regionKey{k.group, j}) && nthList(log(j), listed, 2).IsZero() {
				all = false
			}
		}
		if all {
			delete(rg.pending, k)
			rg.rejoined[k.group] = true
		}
	}
}

var (
	serverList   = regexp.MustCompile(`/servers/detail$`)
	serverDelete = regexp.MustCompile(`/servers/([0-9a-f-]+)$`)
)

// nthList is when the nth server list answered 200 after from arrived;
// zero when there is none yet.
func nthList(reqs []sim.Request, from time.Time, n int) time.Time {
	for _, q := range reqs {
		if q.Service == "compute" && q.Method == "GET" && q.Status == 200 && q.Time.After(from) && serverList.MatchString(q.Path) {
			if n--; n == 0 {
				return q.Time
			}
		}
	}
	return time.Time{}
}

// finishRegions checks, once the run is over, that no delete of a placed
// group's server reached a location while the daemon showed it down: from
// two lists of it after the first poll that showed it (a round in flight
// then may still act), to the last. Call with m.mu held.
func (m *chaosMonitor) finishRegions() {
	rg := m.rg
	m.judgeOver(time.Now(), true)
	for k, sp := range rg.openDown {
		rg.down = append(rg.down, *sp)
		delete(rg.openDown, k)
	}
	for _, sp := range rg.down {
		i := rg.index(sp.location)
		if i < 0 {
			continue
		}
		reqs := rg.regions[i].Requests()
		from := nthList(reqs, sp.from, 2)
		if from.IsZero() {
			continue
		}
		for _, q := range reqs {
			id := serverDelete.FindStringSubmatch(q.Path)
			if q.Service != "compute" || q.Method != "DELETE" || q.Faulted || id == nil || q.Time.Before(from) || q.Time.After(sp.last) {
				continue
			}
			if rg.ids[i][id[1]] == sp.group {
				m.violate("frozen", sp.group, "server %s in %s was deleted at %s, while the daemon showed the location down (%s to %s)", id[1], sp.location,
					q.Time.Format(time.RFC3339Nano), sp.from.Format(time.RFC3339Nano), sp.last.Format(time.RFC3339Nano))
			}
		}
	}
}

// regionsFound says which locations the daemon showed down, for the
// seed's description; "" for a seed of one region.
func (m *chaosMonitor) regionsFound() string {
	if m.rg == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var found []string
	for _, sp := range append(slices.Clone(m.rg.down), func() []downSpan {
		var open []downSpan
		for _, sp := range m.rg.openDown {
			open = append(open, *sp)
		}
		return open
	}()...) {
		found = append(found, fmt.Sprintf("%s in %s for %s", sp.group, sp.location, sp.last.Sub(sp.from).Round(100*time.Millisecond)))
	}
	if len(found) == 0 {
		return "; found down: none"
	}
	return "; found down: " + strings.Join(found, ", ")
}
