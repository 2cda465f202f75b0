package healthcheck

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fake is a Prober for synctest bubbles: no network, answers from a
// per-address script, records when each probe started (on the bubble's
// fake clock).
type fake struct {
	mu     sync.Mutex
	fail   map[string]bool
	hang   map[string]bool // until the probe's context ends
	delay  map[string]time.Duration
	starts map[string][]time.Time
}

func newFake() *fake {
	return &fake{fail: map[string]bool{}, hang: map[string]bool{}, delay: map[string]time.Duration{}, starts: map[string][]time.Time{}}
}

func (f *fake) Probe(ctx context.Context, address string) error {
	f.mu.Lock()
	f.starts[address] = append(f.starts[address], time.Now())
	fail, hang, delay := f.fail[address], f.hang[address], f.delay[address]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("connection refused")
	}
	return nil
}

func (f *fake) setFail(address string, fail bool) {
	f.mu.Lock()
	f.fail[address] = fail
	f.mu.Unlock()
}

func (f *fake) setHang(address string) {
	f.mu.Lock()
	f.hang[address] = true
	f.mu.Unlock()
}

func (f *fake) times(address string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.starts[address]...)
}

func (f *fake) count(address string) int { return len(f.times(address)) }

// testPolicy: probes every second, healthy after 3 passes, unhealthy after
// 2 counted failures, 5s of grace.
var testPolicy = Policy{Interval: time.Second, Timeout: 500 * time.Millisecond, HealthyThreshold: 3, UnhealthyThreshold: 2, Grace: 5 * time.Second}

// signalled reports whether a change signal is pending, and consumes it.
func signalled(c *Checker) bool {
	select {
	case <-c.Changes():
		return true
	default:
		return false
	}
}

// advance moves the bubble's clock by d and lets every probe due by then
// finish.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func observe(t *testing.T, c *Checker, id string) Observation {
	t.Helper()
	o, ok := c.Observe(id)
	if !ok {
		t.Fatalf("%s is not observed", id)
	}
	return o
}

func TestCheckerFirstProbeIsImmediateThenEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: t0}})
		synctest.Wait()
		if n := f.count("10.0.0.1"); n != 1 {
			t.Fatalf("%d probes right after Watch, want 1", n)
		}
		if o := observe(t, c, "a"); o.State != Unknown || o.ConsecutivePass != 1 || !o.LastProbe.Equal(t0) {
			t.Fatalf("after the first probe: %+v", o)
		}
		advance(999 * time.Millisecond)
		if n := f.count("10.0.0.1"); n != 1 {
			t.Fatalf("%d probes before the interval passed, want 1", n)
		}
		advance(time.Millisecond)
		if n := f.count("10.0.0.1"); n != 2 {
			t.Fatalf("%d probes after one interval, want 2", n)
		}
		advance(10 * time.Second)
		times := f.times("10.0.0.1")
		if len(times) != 12 {
			t.Fatalf("%d probes in 11s at 1s, want 12", len(times))
		}
		for i, at := range times {
			if want := t0.Add(time.Duration(i) * time.Second); !at.Equal(want) {
				t.Errorf("probe %d at %v, want %v", i, at.Sub(t0), want.Sub(t0))
			}
		}
	})
}

func TestCheckerHealthyAfterExactlyThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: t0}})
		synctest.Wait()
		for probes := 1; probes < testPolicy.HealthyThreshold; probes++ {
			if o := observe(t, c, "a"); o.State != Unknown || o.ConsecutivePass != probes {
				t.Fatalf("after %d passes: %+v, want unknown", probes, o)
			}
			if signalled(c) {
				t.Fatalf("change signalled after %d passes", probes)
			}
			advance(time.Second)
		}
		o := observe(t, c, "a")
		if o.State != Healthy || o.ConsecutivePass != 3 || !o.Since.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("after 3 passes: %+v, want healthy since the third probe at 2s", o)
		}
		if !signalled(c) {
			t.Fatal("no change signalled when the server became healthy")
		}
		if st := c.Stats(); st != (Stats{Probes: 3, Passes: 3}) {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestCheckerChangesOnlyOnStateChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		pol := testPolicy
		pol.Grace = 0
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: pol, Since: time.Now()}})
		advance(2 * time.Second) // 3 passes
		if !signalled(c) {
			t.Fatal("no signal for unknown → healthy")
		}
		advance(5 * time.Second) // more passes
		if signalled(c) {
			t.Fatal("signal while the server stayed healthy")
		}
		f.setFail("10.0.0.1", true)
		advance(time.Second) // one failure: still healthy
		if o := observe(t, c, "a"); o.State != Healthy || o.ConsecutiveFail != 1 || o.LastError == "" {
			t.Fatalf("after one failure: %+v, want healthy with 1 failure noted", o)
		}
		if signalled(c) {
			t.Fatal("signal for a failure that changed no state")
		}
		advance(time.Second)
		if o := observe(t, c, "a"); o.State != Unhealthy {
			t.Fatalf("after two failures: %+v, want unhealthy", o)
		}
		if !signalled(c) {
			t.Fatal("no signal for healthy → unhealthy")
		}
		advance(5 * time.Second)
		if signalled(c) {
			t.Fatal("signal while the server stayed unhealthy")
		}
		// Re-watching (here: dropping) a target is the caller's own doing
		// and is not signalled.
		c.Watch(nil)
		synctest.Wait()
		if signalled(c) {
			t.Fatal("signal for a target Watch dropped")
		}
	})
}

func TestCheckerChangesCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		pol := Policy{Interval: time.Second, HealthyThreshold: 1}
		var targets []Target
		for _, id := range []string{"a", "b", "c"} {
			targets = append(targets, Target{ID: id, Address: id, Prober: f, Policy: pol})
		}
		c.Watch(targets) // three state changes at once
		synctest.Wait()
		if !signalled(c) {
			t.Fatal("no signal")
		}
		if signalled(c) {
			t.Fatal("a second signal pending: signals must coalesce")
		}
		for _, id := range []string{"a", "b", "c"} {
			if o := observe(t, c, id); o.State != Healthy {
				t.Fatalf("%s: %+v", id, o)
			}
		}
	})
}

func TestCheckerGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setFail("10.0.0.2", true)
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		// The server became ACTIVE 2s before it is watched: grace ends at
		// t0+3s, not 5s after the first probe.
		c.Watch([]Target{{ID: "b", Address: "10.0.0.2", Prober: f, Policy: testPolicy, Since: t0.Add(-2 * time.Second)}})
		advance(2 * time.Second) // probes at 0, 1, 2s: in grace
		if o := observe(t, c, "b"); o.State != Unknown || o.ConsecutiveFail != 0 || o.LastError == "" {
			t.Fatalf("in grace: %+v, want unknown, no counted failure, the error noted", o)
		}
		advance(time.Second) // probe at 3s, exactly when grace ends: counts
		if o := observe(t, c, "b"); o.State != Unknown || o.ConsecutiveFail != 1 {
			t.Fatalf("at the end of grace: %+v, want one counted failure", o)
		}
		advance(time.Second)
		if o := observe(t, c, "b"); o.State != Unhealthy || !o.Since.Equal(t0.Add(4*time.Second)) {
			t.Fatalf("after grace: %+v, want unhealthy since 4s", o)
		}
	})
}

func TestCheckerTimeoutIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setHang("10.0.0.3")
		c := NewChecker(nil)
		defer c.Close()
		pol := testPolicy
		pol.Grace = 0
		t0 := time.Now()
		c.Watch([]Target{{ID: "h", Address: "10.0.0.3", Prober: f, Policy: pol, Since: t0}})
		advance(499 * time.Millisecond)
		if o := observe(t, c, "h"); !o.LastProbe.IsZero() {
			t.Fatalf("a probe finished before its timeout: %+v", o)
		}
		advance(time.Millisecond)
		o := observe(t, c, "h")
		if o.ConsecutiveFail != 1 || !o.LastProbe.Equal(t0.Add(500*time.Millisecond)) || o.LastError != context.DeadlineExceeded.Error() {
			t.Fatalf("after the timeout: %+v, want a failure at 500ms", o)
		}
		advance(time.Second) // second probe starts at 1s, cut at 1.5s
		if o := observe(t, c, "h"); o.State != Unhealthy {
			t.Fatalf("hung server: %+v, want unhealthy after two timed-out probes", o)
		}
		if st := c.Stats(); st != (Stats{Probes: 2, Failures: 2}) {
			t.Fatalf("stats %+v, want 2 failures", st)
		}
	})
}

func TestCheckerSlowProbesDoNotOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.delay["slow"] = 1500 * time.Millisecond
		c := NewChecker(nil)
		defer c.Close()
		pol := testPolicy
		pol.Timeout = 10 * time.Second
		t0 := time.Now()
		c.Watch([]Target{{ID: "s", Address: "slow", Prober: f, Policy: pol, Since: t0}})
		advance(4 * time.Second)
		times := f.times("slow")
		want := []time.Duration{0, 1500 * time.Millisecond, 3 * time.Second}
		if len(times) != len(want) {
			t.Fatalf("%d probes, want %d", len(times), len(want))
		}
		for i := range want {
			if got := times[i].Sub(t0); got != want[i] {
				t.Errorf("probe %d started at %v, want %v (right after the previous)", i, got, want[i])
			}
		}
	})
}

func TestCheckerWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, other := newFake(), newFake()
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		base := Target{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: t0}
		b := Target{ID: "b", Address: "10.0.0.2", Prober: f, Policy: testPolicy, Since: t0}
		c.Watch([]Target{base, b})
		advance(2 * time.Second)
		if o := observe(t, c, "a"); o.State != Healthy {
			t.Fatalf("a: %+v", o)
		}

		// Repeating a target keeps its history and its schedule.
		advance(500 * time.Millisecond)
		c.Watch([]Target{b, base})
		synctest.Wait()
		if o := observe(t, c, "a"); o.State != Healthy || o.ConsecutivePass != 3 {
			t.Fatalf("a after a repeated Watch: %+v, want healthy, unchanged", o)
		}
		if n := f.count("10.0.0.1"); n != 3 {
			t.Fatalf("a probed %d times, want 3: a repeated Watch must not probe", n)
		}

		// Each change restarts from Unknown with an immediate probe.
		changes := []struct {
			what   string
			change func(*Target)
		}{
			{"address", func(t *Target) { t.Address = "10.0.0.9" }},
			{"prober", func(t *Target) { t.Prober = other }},
			{"policy", func(t *Target) { t.Policy.HealthyThreshold = 4 }},
			{"since (rebuilt in place)", func(t *Target) { t.Since = t.Since.Add(time.Minute) }},
		}
		cur := base
		for _, ch := range changes {
			ch.change(&cur)
			c.Watch([]Target{cur, b})
			synctest.Wait()
			if o := observe(t, c, "a"); o.State != Unknown || o.ConsecutivePass != 1 || !o.LastProbe.Equal(time.Now()) {
				t.Fatalf("a after its %s changed: %+v, want a fresh start probed at once", ch.what, o)
			}
			advance(3 * time.Second)
			if o := observe(t, c, "a"); o.State == Unknown {
				t.Fatalf("a after its %s changed: not probed on: %+v", ch.what, o)
			}
		}
		oldAddress, oldProber := f.count("10.0.0.1"), f.count("10.0.0.9")
		advance(5 * time.Second)
		if f.count("10.0.0.1") != oldAddress || f.count("10.0.0.9") != oldProber {
			t.Fatal("a's old address or old prober still probed after the change")
		}

		// A target missing from the list stops and is forgotten.
		c.Watch([]Target{cur})
		synctest.Wait()
		if _, ok := c.Observe("b"); ok {
			t.Fatal("b still observed after it left the watch list")
		}
		n := f.count("10.0.0.2")
		advance(5 * time.Second)
		if f.count("10.0.0.2") != n {
			t.Fatal("b probed after it left the watch list")
		}
		// ... and starts over when it comes back.
		c.Watch([]Target{cur, b})
		synctest.Wait()
		if o := observe(t, c, "b"); o.State != Unknown || o.ConsecutivePass != 1 {
			t.Fatalf("b back: %+v, want a fresh start", o)
		}

		c.Watch(nil)
		synctest.Wait()
		for _, id := range []string{"a", "b"} {
			if _, ok := c.Observe(id); ok {
				t.Fatalf("%s observed after Watch(nil)", id)
			}
		}
	})
}

func TestCheckerWatchOddTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		// No prober: not watched. One ID twice: the later wins, and
		// repeating the same list keeps it.
		list := []Target{
			{ID: "none", Address: "10.0.0.1"},
			{ID: "dup", Address: "10.0.0.2", Prober: f, Policy: testPolicy},
			{ID: "dup", Address: "10.0.0.3", Prober: f, Policy: testPolicy},
		}
		c.Watch(list)
		advance(2 * time.Second)
		c.Watch(list)
		synctest.Wait()
		if _, ok := c.Observe("none"); ok {
			t.Fatal("a target without a prober is observed")
		}
		if o := observe(t, c, "dup"); o.State != Healthy {
			t.Fatalf("dup: %+v, want healthy (kept across Watch)", o)
		}
		if f.count("10.0.0.2") != 0 || f.count("10.0.0.3") != 3 {
			t.Fatalf("dup probed %d times at its first address, %d at its second; want 0 and 3", f.count("10.0.0.2"), f.count("10.0.0.3"))
		}
	})
}

// unhashable is a Prober that == cannot compare (it panics on it).
type unhashable struct {
	f    *fake
	tags []string
}

func (u unhashable) Probe(ctx context.Context, address string) error { return u.f.Probe(ctx, address) }

func TestCheckerNonComparableProber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		target := Target{ID: "u", Address: "10.0.0.1", Prober: unhashable{f, []string{"x"}}, Policy: testPolicy}
		c.Watch([]Target{target})
		advance(2 * time.Second)
		target.Prober = unhashable{f, []string{"x"}} // equal by value
		c.Watch([]Target{target})
		synctest.Wait()
		if o := observe(t, c, "u"); o.State != Healthy {
			t.Fatalf("an equal prober restarted probing: %+v", o)
		}
		target.Prober = unhashable{f, []string{"y"}}
		c.Watch([]Target{target})
		synctest.Wait()
		if o := observe(t, c, "u"); o.State != Unknown {
			t.Fatalf("a different prober did not restart probing: %+v", o)
		}
	})
}

func TestCheckerDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.setHang("h")
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		c.Watch([]Target{{ID: "h", Address: "h", Prober: f}}) // zero Policy
		advance(defaultInterval + defaultTimeout)
		times := f.times("h")
		if len(times) != 2 || !times[1].Equal(t0.Add(defaultInterval)) {
			t.Fatalf("probes at %v, want at 0 and the default interval", times)
		}
		if o := observe(t, c, "h"); !o.LastProbe.Equal(t0.Add(defaultInterval+defaultTimeout)) || o.State != Unhealthy {
			t.Fatalf("%+v: want the default timeout and thresholds of one", o)
		}
	})
}

func TestCheckerCloseStopsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		var targets []Target
		for _, addr := range []string{"a", "b", "c", "d"} {
			f.setHang(addr)
			targets = append(targets, Target{ID: addr, Address: addr, Prober: f, Policy: Policy{Interval: time.Second, Timeout: time.Hour}})
		}
		targets = append(targets, Target{ID: "e", Address: "e", Prober: f, Policy: testPolicy})
		c.Watch(targets)
		synctest.Wait() // four probes hang, one waits for its next turn
		t0 := time.Now()
		c.Close()
		if !time.Now().Equal(t0) {
			t.Fatalf("Close waited %v for probes to time out instead of cancelling them", time.Since(t0))
		}
		c.Close() // a second Close is harmless
		if _, ok := c.Observe("a"); ok {
			t.Fatal("a target observed after Close")
		}
		before := c.Stats()
		c.Watch(targets) // after Close: ignored
		advance(time.Minute)
		if c.Stats() != before || f.count("e") != 1 {
			t.Fatal("probes ran after Close")
		}
		// synctest.Test fails if any goroutine of the bubble outlives
		// this function: Close left none.
	})
}

func TestCheckerLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		f := newFake()
		c := NewChecker(zap.New(core))
		defer c.Close()
		pol := Policy{Interval: time.Second, HealthyThreshold: 2, UnhealthyThreshold: 1}
		c.Watch([]Target{{ID: "srv-1", Address: "10.0.0.1", Prober: f, Policy: pol}})
		advance(time.Second) // pass, pass → healthy
		f.setFail("10.0.0.1", true)
		advance(time.Second) // fail → unhealthy

		if n := logs.FilterMessage("health probe").FilterLevelExact(zapcore.DebugLevel).Len(); n != 3 {
			t.Errorf("%d debug entries for 3 probes", n)
		}
		changed := logs.FilterMessage("health changed").FilterLevelExact(zapcore.InfoLevel).AllUntimed()
		if len(changed) != 2 {
			t.Fatalf("%d state change entries, want 2: %v", len(changed), changed)
		}
		for i, want := range []string{"healthy", "unhealthy"} {
			fields := changed[i].ContextMap()
			if fields["server"] != "srv-1" || fields["address"] != "10.0.0.1" || fields["state"] != want {
				t.Errorf("change %d logged %v, want server, address and state %s", i, fields, want)
			}
		}
		if got := changed[1].ContextMap()["error"]; got != "connection refused" {
			t.Errorf("change to unhealthy logged error %v", got)
		}
		if _, ok := changed[0].ContextMap()["error"]; ok {
			t.Error("change to healthy logged an error")
		}
	})
}

// Until a server is first healthy it is probed every RiseInterval; from
// then on every Interval, even if it fails later.
func TestCheckerRiseInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := NewChecker(nil)
		defer c.Close()
		t0 := time.Now()
		p := testPolicy
		p.RiseInterval = 100 * time.Millisecond
		f.setFail("10.0.0.1", true) // booting: refuses at first
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: p, Since: t0}})
		synctest.Wait()
		advance(time.Second)
		if n := f.count("10.0.0.1"); n != 11 {
			t.Fatalf("%d probes in the first second while booting, want 11 (every 100ms)", n)
		}
		f.setFail("10.0.0.1", false)
		advance(300 * time.Millisecond) // three passes, 100ms apart
		if o := observe(t, c, "a"); o.State != Healthy {
			t.Fatalf("after three passes at the rise interval: %+v", o)
		}
		before := f.count("10.0.0.1")
		advance(3 * time.Second)
		if n := f.count("10.0.0.1") - before; n != 3 {
			t.Errorf("%d probes in 3s once healthy, want 3 (every 1s)", n)
		}
		f.setFail("10.0.0.1", true)
		before = f.count("10.0.0.1")
		advance(3 * time.Second)
		if n := f.count("10.0.0.1") - before; n != 3 {
			t.Errorf("%d probes in 3s after failing again, want 3: a server that served keeps the interval", n)
		}
	})
}

// Observations are dated by the controller's clock when it gives one, so
// that what the checker reports and what the controller records agree.
func TestCheckerWithClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		skew := 6 * time.Minute
		c := NewChecker(nil, WithClock(func() time.Time { return time.Now().Add(skew) }))
		defer c.Close()
		t0 := time.Now()
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: t0}})
		synctest.Wait()
		advance(2 * time.Second)
		if o := observe(t, c, "a"); o.State != Healthy || !o.Since.Equal(t0.Add(2*time.Second+skew)) {
			t.Fatalf("observation %+v, want healthy since 2s on the given clock (%s ahead)", o, skew)
		}
	})
}

// WaitProbed returns once the targets just watched have had their first
// probe, and gives up on a probe that takes longer than its bound; a
// target already probed, or not watched, costs nothing.
func TestCheckerWaitProbed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.delay["10.0.0.1"] = 100 * time.Millisecond
		f.setHang("10.0.0.2")
		c := NewChecker(nil)
		defer c.Close()
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: time.Now()}})
		t0 := time.Now()
		c.WaitProbed(t.Context(), []string{"a", "not-watched"}, time.Second)
		if took := time.Since(t0); took != 100*time.Millisecond {
			t.Errorf("waited %v for a first probe of 100ms", took)
		}
		if o := observe(t, c, "a"); o.ConsecutivePass != 1 {
			t.Errorf("after WaitProbed: %+v, want the first probe recorded", o)
		}
		t0 = time.Now()
		c.WaitProbed(t.Context(), []string{"a"}, time.Second)
		if took := time.Since(t0); took != 0 {
			t.Errorf("waited %v for a target probed already", took)
		}
		c.Watch([]Target{{ID: "a", Address: "10.0.0.1", Prober: f, Policy: testPolicy, Since: t0}, {ID: "b", Address: "10.0.0.2", Prober: f, Policy: testPolicy, Since: t0}})
		t0 = time.Now()
		c.WaitProbed(t.Context(), []string{"a", "b"}, 250*time.Millisecond)
		if took := time.Since(t0); took != 250*time.Millisecond {
			t.Errorf("waited %v for a probe that hangs, want the bound 250ms", took)
		}
	})
}
