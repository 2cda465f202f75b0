package healthcheck

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// scripted is a fake Prober: it answers from a per-address script and
// records when each probe ran (on synctest's fake clock).
type scripted struct {
	mu     sync.Mutex
	fail   map[string]bool
	hang   map[string]bool
	probes map[string][]time.Time
}

func newScripted() *scripted {
	return &scripted{fail: map[string]bool{}, hang: map[string]bool{}, probes: map[string][]time.Time{}}
}

func (s *scripted) Probe(ctx context.Context, address string) error {
	s.mu.Lock()
	s.probes[address] = append(s.probes[address], time.Now())
	fail, hang := s.fail[address], s.hang[address]
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("refused")
	}
	return nil
}

func (s *scripted) set(address string, fail bool) {
	s.mu.Lock()
	s.fail[address] = fail
	s.mu.Unlock()
}

func (s *scripted) times(address string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.probes[address]...)
}

var testPolicy = Policy{Interval: time.Second, Timeout: 500 * time.Millisecond, HealthyThreshold: 3, UnhealthyThreshold: 2, Grace: 5 * time.Second}

func drain(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestCheckerSchedulesAndDecides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newScripted()
		c := NewChecker(nil)
		defer c.Close()
		start := time.Now()
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: p, Policy: testPolicy, Since: start}})

		synctest.Wait()
		if got := len(p.times("10.0.0.1")); got != 1 {
			t.Fatalf("%d probes at start, want 1 (the first probe is immediate)", got)
		}
		if o, _ := c.Observe("a"); o.State != Unknown {
			t.Fatalf("state after one pass = %v, want unknown", o.State)
		}

		time.Sleep(2 * time.Second) // fake time: probes at 0s, 1s, 2s
		synctest.Wait()
		o, ok := c.Observe("a")
		if !ok || o.State != Healthy {
			t.Fatalf("after 3 passes: %+v, want healthy", o)
		}
		if !o.Since.Equal(start.Add(2 * time.Second)) {
			t.Errorf("healthy since %v, want at the third probe", o.Since.Sub(start))
		}
		if !drain(c.Changes()) {
			t.Error("no change signalled when the server became healthy")
		}
		times := p.times("10.0.0.1")
		for i := 1; i < len(times); i++ {
			if d := times[i].Sub(times[i-1]); d != time.Second {
				t.Errorf("probe %d came %v after the previous, want the 1s interval", i, d)
			}
		}

		time.Sleep(3 * time.Second)
		synctest.Wait()
		if drain(c.Changes()) {
			t.Error("change signalled though the state did not change")
		}

		p.set("10.0.0.1", true)
		time.Sleep(time.Second) // one failure (after grace): still healthy
		synctest.Wait()
		if o, _ := c.Observe("a"); o.State != Healthy || o.ConsecutiveFail != 1 {
			t.Fatalf("after one failure: %+v, want healthy with 1 failure", o)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if o, _ := c.Observe("a"); o.State != Unhealthy {
			t.Fatalf("after two failures: %+v, want unhealthy", o)
		}
		if !drain(c.Changes()) {
			t.Error("no change signalled when the server became unhealthy")
		}
	})
}

func TestCheckerGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newScripted()
		p.set("10.0.0.2", true)
		c := NewChecker(nil)
		defer c.Close()
		c.Watch([]Target{{ID: "b", Address: "10.0.0.2", Prober: p, Policy: testPolicy, Since: time.Now()}})
		time.Sleep(4 * time.Second) // probes at 0..4s: inside the 5s grace
		synctest.Wait()
		if o, _ := c.Observe("b"); o.State != Unknown || o.ConsecutiveFail != 0 || o.LastError == "" {
			t.Fatalf("in grace: %+v, want unknown, no counted failure, the error noted", o)
		}
		time.Sleep(2 * time.Second) // probes at 5s and 6s count
		synctest.Wait()
		if o, _ := c.Observe("b"); o.State != Unhealthy {
			t.Fatalf("after grace: %+v, want unhealthy", o)
		}
	})
}

func TestCheckerWatchReplacesAndForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newScripted()
		c := NewChecker(nil)
		defer c.Close()
		since := time.Now()
		a := Target{ID: "a", Address: "10.0.0.1", Prober: p, Policy: testPolicy, Since: since}
		b := Target{ID: "b", Address: "10.0.0.2", Prober: p, Policy: testPolicy, Since: since}
		c.Watch([]Target{a, b})
		time.Sleep(2 * time.Second)
		synctest.Wait()

		// Repeating a target keeps its history.
		c.Watch([]Target{a, b})
		if o, _ := c.Observe("a"); o.State != Healthy {
			t.Fatalf("a after repeated Watch: %+v, want healthy", o)
		}
		// A new address starts over; a missing target stops.
		a.Address = "10.0.0.9"
		c.Watch([]Target{a})
		synctest.Wait()
		if o, _ := c.Observe("a"); o.State != Unknown || o.ConsecutivePass != 1 {
			t.Fatalf("a after its address changed: %+v, want a fresh start", o)
		}
		if _, ok := c.Observe("b"); ok {
			t.Fatal("b still observed after it left the watch list")
		}
		before := len(p.times("10.0.0.2"))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if after := len(p.times("10.0.0.2")); after != before {
			t.Fatalf("b probed %d more times after removal", after-before)
		}
		if len(p.times("10.0.0.1")) != 3 {
			t.Fatalf("old address of a probed %d times, want 3 (none after the change)", len(p.times("10.0.0.1")))
		}
	})
}

func TestCheckerTimeoutIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newScripted()
		p.hang["10.0.0.3"] = true
		c := NewChecker(nil)
		defer c.Close()
		pol := testPolicy
		pol.Grace = 0
		c.Watch([]Target{{ID: "h", Address: "10.0.0.3", Prober: p, Policy: pol, Since: time.Now()}})
		time.Sleep(1600 * time.Millisecond) // probes at 0s and 1s, each cut at 0.5s
		synctest.Wait()
		o, _ := c.Observe("h")
		if o.State != Unhealthy {
			t.Fatalf("hung server: %+v, want unhealthy after two timed-out probes", o)
		}
		if st := c.Stats(); st.Failures != 2 || st.Passes != 0 {
			t.Fatalf("stats %+v, want 2 failures", st)
		}
	})
}

func TestCheckerCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	c := NewChecker(nil)
	p := newScripted()
	var targets []Target
	for _, addr := range []string{"a", "b", "c", "d"} {
		p.hang[addr] = true
		targets = append(targets, Target{ID: addr, Address: addr, Prober: p, Policy: Policy{Interval: time.Millisecond, Timeout: time.Hour}})
	}
	c.Watch(targets)
	c.Close()
	c.Watch(targets) // after Close: ignored
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}
