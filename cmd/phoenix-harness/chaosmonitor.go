package main

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// chaosMonitor samples the simulator — the cloud's own truth, not what
// Phoenix believes — and checks the invariants that hold at every moment:
// availability, bound, no orphans, replace before remove; the health gate
// (no server recorded ready or put into the traffic before the cloud saw
// it healthy); that an image a rollback rejected is never booted again;
// and steering (chaossteermon.go).
type chaosMonitor struct {
	sim    *sim.Sim
	groups map[string]chaosGroup
	// pools and fips are each group's pool ID and floating IP address.
	pools, fips map[string]string

	mu sync.Mutex
	// excused are servers the chaos made sick (a health flap, a
	// compromise) while they served, or that an image failing after its
	// gate made sick after they served: their loss is not Phoenix's doing.
	// Present and not deleting, such a server counts as serving; deleted,
	// it is owed to its group until the group is whole again.
	excused map[string]bool
	owed    map[string]map[string]bool
	// excusedIn is the group an excused server was last seen in; settled
	// the excused servers whose loss the group has made good.
	excusedIn map[string]string
	settled   map[string]bool
	// leaky are the images whose servers fail after passing their gate.
	leaky map[string]bool
	// boots holds each boot sampled (a server and its created-at record:
	// a rebuild in place is a new boot), healthySeen those the cloud was
	// seen healthy in, unjudged those whose healthy spell a sample may
	// have missed: first seen recorded ready already (at the monitor's
	// start), or not seen healthy yet when the samples stalled.
	boots, healthySeen, unjudged map[string]bool
	// lastSample is when the last sample listed the servers.
	lastSample time.Time
	// rejected is, per group, each image a rollback rejected and the
	// earliest time it was recorded.
	rejected map[string]map[string]time.Time
	// healthy is the last sample's healthy, not deleting servers.
	healthy map[string]string // server ID → group
	// seen counts a violation by kind and group; first keeps the first
	// of each in words.
	seen    map[string]int
	first   []string
	samples int
	// armed is set once the first build is done: availability is judged
	// from then on; the bound and the tags from the first sample.
	armed bool
	// st is what invariant 7 is judged by.
	st steerState
	// known is every server sampled, as first seen, for the replicas'
	// judge (chaosterms.go).
	known map[string]knownServer
	// rg judges the groups placed over several regions (nil: none).
	rg *regionMonitor
	// stages watches a two-stage seed for its judge (nil: none).
	stages *stageJudge

	stop chan struct{}
	done chan struct{}
}

func newChaosMonitor(s *sim.Sim, groups []chaosGroup, pools, fips map[string]string) *chaosMonitor {
	m := &chaosMonitor{
		sim:         s,
		groups:      map[string]chaosGroup{},
		pools:       pools,
		fips:        fips,
		leaky:       map[string]bool{},
		boots:       map[string]bool{},
		healthySeen: map[string]bool{},
		unjudged:    map[string]bool{},
		rejected:    map[string]map[string]time.Time{},
		excused:     map[string]bool{},
		owed:        map[string]map[string]bool{},
		healthy:     map[string]string{},
		seen:        map[string]int{},

		excusedIn: map[string]string{},
		settled:   map[string]bool{},
		st:        newSteerState(),
		known:     map[string]knownServer{},
	}
	for _, g := range groups {
		m.groups[g.name] = g
		m.owed[g.name] = map[string]bool{}
		m.rejected[g.name] = map[string]time.Time{}
	}
	return m
}

// start samples every period until stopped.
func (m *chaosMonitor) start(every time.Duration) {
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	m.sample()
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
}

// finish takes a last sample and stops.
func (m *chaosMonitor) finish() {
	if m.stop != nil {
		close(m.stop)
		<-m.done
		m.stop = nil
	}
	m.sample()
	if m.rg != nil {
		m.mu.Lock()
		m.finishRegions()
		m.mu.Unlock()
	}
}

// arm starts judging availability.
func (m *chaosMonitor) arm() {
	m.mu.Lock()
	m.armed = true
	m.mu.Unlock()
}

// excuse records that the chaos is about to make a server sick; call it
// before doing so, so that no sample sees the sickness unexcused.
func (m *chaosMonitor) excuse(id string) {
	m.mu.Lock()
	m.excused[id] = true
	m.mu.Unlock()
}

// failsAfterGate tells the monitor that the servers of an image fail
// after passing their gate; call it before any can boot.
func (m *chaosMonitor) failsAfterGate(image string) {
	m.mu.Lock()
	m.leaky[image] = true
	m.mu.Unlock()
}

// boot names one boot of a server: a rebuild in place records a new
// created-at. A server whose image is not yet the one its record names
// (its rebuild recorded, not yet done) still runs its last boot.
func boot(s sim.Server) (key string, current bool) {
	img := s.Metadata[controller.MetaImage]
	return s.ID + " " + s.Metadata[controller.MetaCreatedAt], img == "" || img == s.ImageID
}

func (m *chaosMonitor) violate(kind, group, format string, args ...any) {
	key := kind + "/" + group
	m.seen[key]++
	if m.seen[key] == 1 {
		m.first = append(m.first, fmt.Sprintf("%s: group %s: %s", kind, group, fmt.Sprintf(format, args...)))
	}
}

func (m *chaosMonitor) sample() {
	// The traffic is read before the servers: a server put into it was
	// seen healthy by Phoenix before, so by this sample at the latest.
	inTraffic := map[string]string{} // address → group
	for g, pool := range m.pools {
		for _, mb := range m.sim.Members(pool) {
			if mb.Weight > 0 && mb.AdminStateUp {
				inTraffic[mb.Address] = g
			}
		}
	}
	if len(m.fips) > 0 {
		for _, f := range m.sim.FloatingIPs() {
			for g, addr := range m.fips {
				if f.Address == addr && f.FixedIP != "" {
					inTraffic[f.FixedIP] = g
				}
			}
		}
	}
	trafficAt := time.Now()
	servers := m.sim.Servers()
	at := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	m.gate(servers, inTraffic, trafficAt, at)
	total := map[string]int{}
	healthy := map[string]int{}
	excusedUp := map[string]int{}
	nowHealthy := map[string]string{}
	present := map[string]bool{}
	deleting := map[string]bool{}
	for _, s := range servers {
		g := groupOfServer(s)
		if g == "" {
			m.violate("orphan", s.Metadata["phoenix:group"], "server %s (%s) carries no group tag", s.Name, s.ID)
			continue
		}
		if _, ok := m.groups[g]; !ok {
			continue
		}
		present[s.ID] = true
		deleting[s.ID] = s.Deleting
		if _, ok := m.known[s.ID]; !ok {
			m.known[s.ID] = knownServer{group: g, name: s.Name, createdBy: s.CreatedBy, created: s.Created}
		}
		total[g]++
		if key, _ := boot(s); m.leaky[s.ImageID] && m.healthySeen[key] && !s.Healthy && !s.Deleting {
			// Served (passed its checks: Phoenix counts it, whether or not
			// it recorded it ready — it may have turned old the round it
			// did), and its image made it sick.
			m.excused[s.ID] = true
		}
		if m.excused[s.ID] {
			m.excusedIn[s.ID] = g
		}
		switch {
		case s.Healthy:
			healthy[g]++
			nowHealthy[s.ID] = g
		case m.excused[s.ID] && !s.Deleting:
			excusedUp[g]++
		case m.excused[s.ID] && !m.settled[s.ID]:
			m.owed[g][s.ID] = true
		}
	}
	for id := range m.excused {
		if g, ok := m.excusedIn[id]; ok && !present[id] && !m.settled[id] {
			m.owed[g][id] = true
		}
	}
	for name, g := range m.groups {
		if healthy[name] >= g.count {
			for id := range m.owed[name] {
				m.settled[id] = true
			}
			clear(m.owed[name])
		}
		if ceiling := g.count + g.surge; total[name] > ceiling {
			m.violate("bound", name, "%d servers, above count %d + max_surge %d", total[name], g.count, g.surge)
		}
		if !m.armed {
			continue
		}
		floor := g.count - g.unavailable
		serving := healthy[name] + excusedUp[name] + len(m.owed[name])
		if serving < floor {
			m.violate("availability", name, "%d servers serving, below count %d − max_unavailable %d", serving, g.count, g.unavailable)
		}
		// A server that was healthy at the last sample and is now being
		// deleted or gone, not made sick by the chaos: the rest must hold
		// the floor.
		for id, was := range m.healthy {
			if was != name || m.excused[id] {
				continue
			}
			if _, still := nowHealthy[id]; still {
				continue
			}
			if (!present[id] || deleting[id]) && healthy[name]+excusedUp[name]+len(m.owed[name]) < floor {
				m.violate("replace-before-remove", name, "healthy server %s was deleted while %d others served, below the floor %d", id, healthy[name], floor)
			}
		}
	}
	m.healthy = nowHealthy
	m.steering(servers, at)
	if m.rg != nil {
		m.sampleRegions(servers, at)
	}
	if m.stages != nil {
		m.stages.observe(servers, at)
	}
}

// maxSampleGap is the longest gap between two samples that still sees
// every healthy spell a server has before Phoenix records it ready: two
// passing probes at least 20 ms apart (health.rise_interval).
const maxSampleGap = 10 * time.Millisecond

// gate checks the health gate and the rejected images. A boot recorded
// ready (phoenix:ready-at), or holding the group's traffic (a pool member
// taking requests, the floating IP), must have been seen healthy by the
// cloud: only a check that passed lets Phoenix count a server as serving.
// Two ways: no sample saw the boot healthy (judged only while the samples
// kept up), or it was recorded ready, or held the traffic when sampled
// (trafficAt), after it became ACTIVE and before its application could
// answer (ActiveAt + HealthDelay: exact, whatever the sampling). A server
// of an image a rollback rejected must not be created, nor rebuilt, after
// the rejection was recorded. at is when servers were listed. Call with
// m.mu held.
func (m *chaosMonitor) gate(servers []sim.Server, inTraffic map[string]string, trafficAt, at time.Time) {
	if !m.lastSample.IsZero() && at.Sub(m.lastSample) > maxSampleGap {
		for key := range m.boots {
			if !m.healthySeen[key] {
				m.unjudged[key] = true
			}
		}
	}
	m.lastSample = at
	for _, s := range servers {
		g := groupOfServer(s)
		if _, ok := m.groups[g]; !ok {
			continue
		}
		key, current := boot(s)
		ready := s.Metadata[controller.MetaReadyAt] != ""
		switch {
		case !current:
		case s.Healthy:
			m.healthySeen[key] = true
		case ready && !m.boots[key]:
			m.unjudged[key] = true
		}
		if current {
			m.boots[key] = true
		}
		if current && !m.healthySeen[key] && !m.unjudged[key] {
			switch {
			case ready:
				m.violate("gate", g, "server %s (%s) recorded ready at %s, never seen healthy by the cloud", s.Name, s.ImageID, s.Metadata[controller.MetaReadyAt])
			case inTraffic[s.Address] == g:
				m.violate("gate", g, "server %s (%s) takes the group's traffic, never seen healthy by the cloud", s.Name, s.ImageID)
			}
		}
		if up := s.ActiveAt.Add(s.HealthDelay); current && !s.ActiveAt.IsZero() {
			before := func(t time.Time) bool { return !t.Before(s.ActiveAt) && t.Before(up) }
			readyAt, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaReadyAt])
			switch {
			case err == nil && before(readyAt):
				m.violate("gate", g, "server %s (%s) recorded ready at %s, before its application answered (ACTIVE at %s, up at %s)", s.Name, s.ImageID,
					readyAt.Format(time.RFC3339Nano), s.ActiveAt.Format(time.RFC3339Nano), up.Format(time.RFC3339Nano))
			case inTraffic[s.Address] == g && before(trafficAt):
				m.violate("gate", g, "server %s (%s) takes the group's traffic before its application answered (ACTIVE at %s, up at %s)", s.Name, s.ImageID,
					s.ActiveAt.Format(time.RFC3339Nano), up.Format(time.RFC3339Nano))
			}
		}
		if f := strings.Fields(s.Metadata[controller.MetaRejected]); len(f) == 3 {
			img, _, _ := strings.Cut(f[0], "@")
			if at, err := time.Parse(time.RFC3339Nano, f[2]); err == nil && img != "" {
				if was, ok := m.rejected[g][img]; !ok || at.Before(was) {
					m.rejected[g][img] = at
				}
			}
		}
	}
	for _, s := range servers {
		g := groupOfServer(s)
		at, ok := m.rejected[g][s.ImageID]
		if _, current := boot(s); !ok || !current {
			continue
		}
		booted := s.Created
		if c, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaCreatedAt]); err == nil && c.After(booted) {
			booted = c
		}
		if booted.After(at) {
			m.violate("rejected", g, "server %s booted image %s at %s, after a rollback rejected it at %s", s.Name, s.ImageID,
				booted.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
		}
	}
}

// knownServers is every server of the groups sampled so far.
func (m *chaosMonitor) knownServers() map[string]knownServer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.known)
}

// violations returns the first violation of each kind and group, and how
// many samples found one.
func (m *chaosMonitor) violations() (first []string, count int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.seen {
		count += n
	}
	return append([]string(nil), m.first...), count
}
