package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// chaosMonitor samples the simulator — the cloud's own truth, not what
// Phoenix believes — and checks the invariants that hold at every moment:
// availability, bound, no orphans, replace before remove.
type chaosMonitor struct {
	sim    *sim.Sim
	groups map[string]chaosGroup

	mu sync.Mutex
	// excused are servers the chaos made sick (a health flap, a
	// compromise) while they served: their loss is not Phoenix's doing.
	// Present and not deleting, such a server counts as serving; deleted,
	// it is owed to its group until the group is whole again.
	excused map[string]bool
	owed    map[string]map[string]bool
	// excusedIn is the group an excused server was last seen in; settled
	// the excused servers whose loss the group has made good.
	excusedIn map[string]string
	settled   map[string]bool
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

	stop chan struct{}
	done chan struct{}
}

func newChaosMonitor(s *sim.Sim, groups []chaosGroup) *chaosMonitor {
	m := &chaosMonitor{
		sim:     s,
		groups:  map[string]chaosGroup{},
		excused: map[string]bool{},
		owed:    map[string]map[string]bool{},
		healthy: map[string]string{},
		seen:    map[string]int{},

		excusedIn: map[string]string{},
		settled:   map[string]bool{},
	}
	for _, g := range groups {
		m.groups[g.name] = g
		m.owed[g.name] = map[string]bool{}
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

func (m *chaosMonitor) violate(kind, group, format string, args ...any) {
	key := kind + "/" + group
	m.seen[key]++
	if m.seen[key] == 1 {
		m.first = append(m.first, fmt.Sprintf("%s: group %s: %s", kind, group, fmt.Sprintf(format, args...)))
	}
}

func (m *chaosMonitor) sample() {
	servers := m.sim.Servers()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
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
		total[g]++
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
