package main

import (
	"fmt"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// Invariant 7, as the monitor sees it in the cloud. While a group is
// steered (held, blocked, outside its window) no voluntary replacement
// starts; a protected server is never removed unless compromised.
//
// A replacement starts with a create (surge first) or with the drain,
// delete or rebuild of a server (unavailability first, strategy rebuild).
// Phoenix writes the time of the round that decided either on the server
// (phoenix:created-at, phoenix:phase-at), so a step is judged by when it
// was decided, not when the cloud showed it. A step decided within a
// steered span is voluntary unless the samples before it excuse it:
//
//   - a create, when the group was short of live servers (not deleting,
//     not in ERROR, no phase, healthy or still booting) within
//     steerLookback before it: something failed, fell sick, was taken out
//     or was being replaced already, and Phoenix makes it good;
//   - a drain, delete or rebuild, when that server was not up (sick, in
//     ERROR, stopped, on its way out) within steerLookback before it, or
//     the group had a server to spare (a replacement under way became
//     ready, or booted), or the chaos made the server sick.
//
// A group sent an urgent patch or a compromise is judged no further: its
// rebuild goes on whatever steers it.

// steerLookback is how long before a step's decision the samples may
// excuse it: Phoenix sees a server fail or recover some probes and a round
// after the cloud does, slower on a busy machine.
const steerLookback = 3 * time.Second

// stuckBoot is how long a server may stay in BUILD and still count as a
// live one of its group: a longer boot is stuck, and Phoenix replaces it
// once its progress deadline passes.
const stuckBoot = 1500 * time.Millisecond

// The grace after steering starts before the monitor judges, when the
// daemon's status does not show sooner that every round from then on
// saw it: a round in flight decided before the hold, and the blocker
// reuses a verdict for 5 s.
const (
	holdGrace    = 3 * time.Second
	blockerGrace = 7 * time.Second
)

// stepHorizon is how long a step waits to be judged: a span's judging
// starts at most blockerGrace after it opened.
const stepHorizon = 2 * blockerGrace

// steerSpan is a time a group was steered, as the harness made it: judged
// from from (zero until known: a round in flight may have decided before
// the steering) until to (zero while it lasts).
type steerSpan struct {
	group, why       string
	opened, from, to time.Time
}

// steerStep is a step that looks voluntary: nothing excused it.
type steerStep struct {
	at   time.Time
	what string
}

// protectedServer is a protected server as it was when protected.
type protectedServer struct {
	group, name, image, created string
}

// steerState is the monitor's part for invariant 7; guarded by the
// monitor's mutex.
type steerState struct {
	spans map[string][]*steerSpan
	// steps wait, per group, to be judged against the spans.
	steps map[string][]steerStep
	// seen marks the creates and phases looked at; firstSeen is when a
	// server was first sampled, lastDown when last not up.
	seen      map[string]bool
	firstSeen map[string]time.Time
	lastDown  map[string]time.Time
	// lastShort and lastSpare are when a sample last saw a group with
	// fewer live servers than its count, and with a server to spare;
	// live the last sample's live servers.
	lastShort, lastSpare map[string]time.Time
	live                 map[string]int
	// urgentAt is when a group was sent an urgent rebuild.
	urgentAt map[string]time.Time
	// since is when judging started (the chaos): earlier steps are the
	// first build's.
	since     time.Time
	protected map[string]protectedServer
}

func newSteerState() steerState {
	return steerState{
		spans: map[string][]*steerSpan{}, steps: map[string][]steerStep{},
		seen: map[string]bool{}, firstSeen: map[string]time.Time{}, lastDown: map[string]time.Time{},
		lastShort: map[string]time.Time{}, lastSpare: map[string]time.Time{}, live: map[string]int{},
		urgentAt: map[string]time.Time{}, protected: map[string]protectedServer{},
	}
}

// steer opens a steered span of group at opened; it is judged once
// judgeSpanFrom says from when.
func (m *chaosMonitor) steer(group, why string, opened time.Time) *steerSpan {
	m.mu.Lock()
	defer m.mu.Unlock()
	sp := &steerSpan{group: group, why: why, opened: opened}
	m.st.spans[group] = append(m.st.spans[group], sp)
	return sp
}

// judgeSpanFrom sets when span is judged from: never before it opened.
func (m *chaosMonitor) judgeSpanFrom(sp *steerSpan, from time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if from.Before(sp.opened) {
		from = sp.opened
	}
	sp.from = from
}

// endSteer ends span at to (nothing after it is judged).
func (m *chaosMonitor) endSteer(sp *steerSpan, to time.Time) {
	if sp == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sp.to.IsZero() || to.Before(sp.to) {
		sp.to = to
	}
}

// urgent records that group is about to be sent an urgent rebuild (a
// patch with urgency, a compromise): from then on it is not judged.
func (m *chaosMonitor) urgent(group string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if was, ok := m.st.urgentAt[group]; !ok || at.Before(was) {
		m.st.urgentAt[group] = at
	}
}

// protect records a server protected just now: from now on it must stay
// as it is.
func (m *chaosMonitor) protect(s sim.Server) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.protected[s.ID] = protectedServer{group: groupOfServer(s), name: s.Name, image: s.ImageID, created: s.Metadata[controller.MetaCreatedAt]}
}

// compromised records that a protected server is about to be reported
// compromised: it must go now. Call it before the report.
func (m *chaosMonitor) compromised(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.st.protected, id)
}

// startJudging starts judging steps: those decided from at on.
func (m *chaosMonitor) startJudging(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.since = at
}

// up says whether a server serves or is on its way to: present, not
// being deleted, not in ERROR, no phase of Phoenix's, and healthy or still
// booting (in BUILD, or ACTIVE with its application not started yet).
func up(s sim.Server, at time.Time) bool {
	switch {
	case s.Deleting || s.Status == "ERROR" || s.Metadata[controller.MetaPhase] != "":
		return false
	case s.Healthy || s.Status == "BUILD":
		return true
	}
	return s.Status == "ACTIVE" && at.Before(s.ActiveAt.Add(s.HealthDelay))
}

// live is up, but a boot stuck in BUILD no longer counts.
func live(s sim.Server, at time.Time) bool {
	return up(s, at) && (s.Status != "BUILD" || at.Sub(s.Created) < stuckBoot)
}

// steering checks invariant 7 at a sample taken at at. Call with m.mu
// held.
func (m *chaosMonitor) steering(servers []sim.Server, at time.Time) {
	st := &m.st
	byID := map[string]sim.Server{}
	liveN, upN := map[string]int{}, map[string]int{}
	for _, s := range servers {
		g := groupOfServer(s)
		if _, ok := m.groups[g]; !ok {
			continue
		}
		byID[s.ID] = s
		// Judged against the samples before this one: this one shows the
		// step done.
		m.noteSteps(g, s)
		if _, ok := st.firstSeen[s.ID]; !ok {
			st.firstSeen[s.ID] = at
		}
		if up(s, at) || m.excused[s.ID] && !s.Deleting {
			upN[g]++
		} else {
			st.lastDown[s.ID] = at
		}
		if live(s, at) {
			liveN[g]++
		}
	}
	for name, g := range m.groups {
		if liveN[name] < g.count {
			st.lastShort[name] = at
		}
		if upN[name] > g.count {
			st.lastSpare[name] = at
		}
		st.live[name] = liveN[name]
	}
	m.judgeSteps(at)
	for id, p := range st.protected {
		s, ok := byID[id]
		switch {
		case !ok:
			m.violate("protected", p.group, "protected server %s (%s) was deleted", p.name, id)
		case s.Deleting:
			m.violate("protected", p.group, "protected server %s (%s) is being deleted", p.name, id)
		case s.Metadata[controller.MetaPhase] != "":
			m.violate("protected", p.group, "protected server %s (%s) is %s: %s", p.name, id, s.Metadata[controller.MetaPhase], s.Metadata[controller.MetaReason])
		case s.ImageID != p.image || s.Metadata[controller.MetaCreatedAt] != p.created:
			m.violate("protected", p.group, "protected server %s (%s) was rebuilt: image %s, created at %s (was %s, %s)", p.name, id,
				s.ImageID, s.Metadata[controller.MetaCreatedAt], p.image, p.created)
		}
	}
}

// noteSteps notes a server's create, and each drain, delete or rebuild of
// it, once, as a step to judge unless the samples so far excuse it.
func (m *chaosMonitor) noteSteps(g string, s sim.Server) {
	st := &m.st
	if !st.seen[s.ID] {
		st.seen[s.ID] = true
		c, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaCreatedAt])
		if err == nil && m.judging(g, c) && !m.within(st.lastShort[g], c) {
			st.steps[g] = append(st.steps[g], steerStep{at: c, what: fmt.Sprintf(
				"server %s created at %s (image %s) while %d servers of count %d were live, none missing in the %s before",
				s.Name, c.Format(time.RFC3339Nano), s.ImageID, st.live[g], m.groups[g].count, steerLookback)})
		}
	}
	phase := s.Metadata[controller.MetaPhase]
	if phase == "" {
		return
	}
	key := s.ID + " " + phase + " " + s.Metadata[controller.MetaPhaseAt]
	if st.seen[key] {
		return
	}
	st.seen[key] = true
	c, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaPhaseAt])
	if err != nil || !m.judging(g, c) || m.excused[s.ID] {
		return
	}
	// A server first seen with its phase is no server known to serve.
	first, ok := st.firstSeen[s.ID]
	if !ok || !first.Before(c) || m.within(st.lastDown[s.ID], c) || m.within(st.lastSpare[g], c) {
		return
	}
	st.steps[g] = append(st.steps[g], steerStep{at: c, what: fmt.Sprintf(
		"server %s (image %s) began %s at %s (%s) while it served and the group had no server to spare",
		s.Name, s.ImageID, phase, c.Format(time.RFC3339Nano), s.Metadata[controller.MetaReason])})
}

// judging says whether a step of group decided at c is judged at all:
// decided in the chaos, before any urgent rebuild of the group.
func (m *chaosMonitor) judging(group string, c time.Time) bool {
	if m.st.since.IsZero() || c.Before(m.st.since) {
		return false
	}
	u, ok := m.st.urgentAt[group]
	return !ok || c.Before(u)
}

// within says whether a sample at t lies within steerLookback before a
// decision at c (or after it: the sample before the step showed it), and
// in the chaos: the first build was done before it, with nothing left
// to make good.
func (m *chaosMonitor) within(t, c time.Time) bool {
	return !t.IsZero() && !t.Before(c.Add(-steerLookback)) && !t.Before(m.st.since)
}

// judgeSteps reports the steps decided within a span judged by now, and
// forgets those too old for any span still to be judged.
func (m *chaosMonitor) judgeSteps(at time.Time) {
	for g, steps := range m.st.steps {
		kept := steps[:0]
		for _, s := range steps {
			if sp := m.spanAt(g, s.at); sp != nil {
				m.violate("steering", g, "%s, %s since %s (judged from %s)", s.what, sp.why,
					sp.opened.Format(time.RFC3339Nano), sp.from.Format(time.RFC3339Nano))
				continue
			}
			if at.Sub(s.at) < stepHorizon {
				kept = append(kept, s)
			}
		}
		m.st.steps[g] = kept
	}
}

// spanAt is the judged span of group that holds c, or nil.
func (m *chaosMonitor) spanAt(group string, c time.Time) *steerSpan {
	for _, sp := range m.st.spans[group] {
		if !sp.from.IsZero() && !c.Before(sp.from) && (sp.to.IsZero() || c.Before(sp.to)) {
			return sp
		}
	}
	return nil
}
