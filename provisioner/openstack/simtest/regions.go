package simtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// RegionMonitor samples the simulator's own truth in several regions, for
// tests of a group placed over them: the group's servers in each region,
// healthy and in all, judged against bounds the test moves as it goes.
type RegionMonitor struct {
	regions []*sim.Sim
	member  func(sim.Server) bool
	mu      sync.Mutex
	// excluded regions are left out of the bound (they are down).
	excluded map[int]bool
	// ceiling bounds the servers of the regions not excluded, floor the
	// healthy servers over every region; 0 checks nothing.
	ceiling, floor int
	violations     []string
	samples        int
	stop, done     chan struct{}
}

// WatchRegions samples regions every 2ms until Check; member says which
// servers are the group's.
func WatchRegions(member func(sim.Server) bool, regions ...*sim.Sim) *RegionMonitor {
	m := &RegionMonitor{regions: regions, member: member, excluded: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(2 * time.Millisecond)
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
	return m
}

// Counts are the group's servers in each region, in all and healthy.
func (m *RegionMonitor) Counts() (total, healthy []int) {
	for _, r := range m.regions {
		t, h := 0, 0
		for _, s := range r.Servers() {
			if m.member(s) {
				t++
				if s.Healthy {
					h++
				}
			}
		}
		total, healthy = append(total, t), append(healthy, h)
	}
	return total, healthy
}

func (m *RegionMonitor) sample() {
	total, healthy := m.Counts()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	bound, serving := 0, 0
	for i := range total {
		serving += healthy[i]
		if !m.excluded[i] {
			bound += total[i]
		}
	}
	var v string
	switch {
	case m.ceiling > 0 && bound > m.ceiling:
		v = fmt.Sprintf("%d servers in the regions not down, above %d", bound, m.ceiling)
	case m.floor > 0 && serving < m.floor:
		v = fmt.Sprintf("%d healthy servers, below %d", serving, m.floor)
	}
	if v != "" && len(m.violations) < 10 {
		var per []string
		for i, r := range m.regions {
			per = append(per, fmt.Sprintf("%s %d/%d", r.RegionName(), healthy[i], total[i]))
		}
		m.violations = append(m.violations, v+" (healthy/all: "+strings.Join(per, ", ")+")")
	}
}

// Bound sets the ceiling on the servers of the regions not excluded and
// the floor of healthy servers over all of them.
func (m *RegionMonitor) Bound(ceiling, floor int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ceiling, m.floor = ceiling, floor
}

// Exclude leaves region i out of the bound (true: it is down) or counts it
// again.
func (m *RegionMonitor) Exclude(i int, out bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.excluded[i] = out
}

// Check stops sampling and fails the test on every violation seen, or
// when no sample was taken.
func (m *RegionMonitor) Check(t testing.TB) {
	t.Helper()
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Logf("monitor: %d samples, %d violations", m.samples, len(m.violations))
	for _, v := range m.violations {
		t.Error(v)
	}
	if m.samples == 0 {
		t.Error("the monitor took no sample")
	}
}
