package sim

import (
	"sync"
	"time"
)

// GroupExtremes is what a Monitor saw of one group: the fewest healthy
// servers, the most servers in all, and how many samples it took.
type GroupExtremes struct {
	MinHealthy, MaxHealthy, MaxTotal, Samples int
}

// Monitor samples the simulator's own view of the fleet on a schedule, so
// tests judge a rollout by what the cloud held at every moment rather than
// by what the controller believed.
type Monitor struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
	mu       sync.Mutex
	seen     map[string]*GroupExtremes
}

// Monitor starts sampling every interval. groupOf names the group a server
// belongs to ("" for none); servers of no group are ignored.
func (s *Sim) Monitor(every time.Duration, groupOf func(Server) string) *Monitor {
	m := &Monitor{stop: make(chan struct{}), seen: map[string]*GroupExtremes{}}
	m.sample(s, groupOf)
	s.sampleEvery(every, m.stop, &m.done, func() { m.sample(s, groupOf) })
	return m
}

func (m *Monitor) sample(s *Sim, groupOf func(Server) string) {
	healthy, total := map[string]int{}, map[string]int{}
	for _, srv := range s.Servers() {
		g := groupOf(srv)
		if g == "" {
			continue
		}
		total[g]++
		if srv.Healthy {
			healthy[g]++
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for g := range m.seen {
		if _, ok := total[g]; !ok {
			total[g] = 0
		}
	}
	for g, n := range total {
		e, ok := m.seen[g]
		if !ok {
			e = &GroupExtremes{MinHealthy: healthy[g]}
			m.seen[g] = e
		}
		e.Samples++
		e.MinHealthy = min(e.MinHealthy, healthy[g])
		e.MaxHealthy = max(e.MaxHealthy, healthy[g])
		e.MaxTotal = max(e.MaxTotal, n)
	}
}

// Stop ends sampling and returns the extremes seen per group.
func (m *Monitor) Stop() map[string]GroupExtremes {
	m.stopOnce.Do(func() { close(m.stop) })
	m.done.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]GroupExtremes, len(m.seen))
	for g, e := range m.seen {
		out[g] = *e
	}
	return out
}

// sampleEvery runs sample every period in a goroutine that Close waits for,
// until stop is closed or the simulator closes; done counts it so that a
// monitor's Stop can wait for its last sample. Nothing runs once the
// simulator is closed.
func (s *Sim) sampleEvery(every time.Duration, stop <-chan struct{}, done *sync.WaitGroup, sample func()) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.bg.Add(1) // Close waits for the sampler too
	}
	s.mu.Unlock()
	if closed {
		return
	}
	done.Add(1)
	go func() {
		defer s.bg.Done()
		defer done.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-s.closing:
				return
			case <-t.C:
				sample()
			}
		}
	}()
}
