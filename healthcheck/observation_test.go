package healthcheck

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// step is one probe result and the verdict expected right after it.
type step struct {
	at     time.Duration // after t0
	pass   bool
	state  State
	passes int // ConsecutivePass expected
	fails  int // ConsecutiveFail expected
}

func TestRecord(t *testing.T) {
	const (
		U = Unknown
		H = Healthy
		X = Unhealthy
		s = time.Second
	)
	P := func(at time.Duration, state State, passes int) step {
		return step{at: at, pass: true, state: state, passes: passes}
	}
	F := func(at time.Duration, state State, fails int) step {
		return step{at: at, pass: false, state: state, fails: fails}
	}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	// The default policy of these cases: 3 passes to be healthy, 2
	// counted failures to be unhealthy, 10s of grace.
	pol := Policy{HealthyThreshold: 3, UnhealthyThreshold: 2, Grace: 10 * s}
	noGrace := Policy{HealthyThreshold: 2, UnhealthyThreshold: 3}
	cases := []struct {
		name   string
		policy Policy
		since  time.Duration // Target.Since, after t0
		steps  []step
	}{
		{"healthy after exactly HealthyThreshold passes", pol, 0, []step{
			P(1*s, U, 1), P(2*s, U, 2), P(3*s, H, 3)}},
		{"further passes keep Since", pol, 0, []step{
			P(1*s, U, 1), P(2*s, U, 2), P(3*s, H, 3), P(4*s, H, 4), P(30*s, H, 5)}},
		{"passes in grace count", pol, 0, []step{
			P(0, U, 1), P(0, U, 2), P(0, H, 3)}},
		{"a failure in grace resets the passes", pol, 0, []step{
			P(1*s, U, 1), P(2*s, U, 2), F(3*s, U, 0), P(4*s, U, 1), P(5*s, U, 2), P(6*s, H, 3)}},
		{"failures in grace are not counted", pol, 0, []step{
			F(0, U, 0), F(1*s, U, 0), F(5*s, U, 0), F(9*s, U, 0), F(10*s-1, U, 0)}},
		{"a failure exactly at the end of grace counts", pol, 0, []step{
			F(10*s-1, U, 0), F(10*s, U, 1), F(11*s, X, 2)}},
		{"grace counts from Since, not from the first probe", pol, 100 * s, []step{
			F(50*s, U, 0), F(109*s, U, 0), F(110*s, U, 1), F(111*s, X, 2)}},
		{"a probe before Since (clock skew) is in grace", pol, 100 * s, []step{
			F(0, U, 0), F(99*s, U, 0)}},
		{"zero grace counts the first failure", noGrace, 0, []step{
			F(0, U, 1), F(1*s, U, 2), F(2*s, X, 3)}},
		{"a pass resets counted failures", noGrace, 0, []step{
			F(0, U, 1), F(1*s, U, 2), P(2*s, U, 1), F(3*s, U, 1), F(4*s, U, 2), F(5*s, X, 3)}},
		{"healthy survives fewer failures than the threshold", noGrace, 0, []step{
			P(0, U, 1), P(1*s, H, 2), F(2*s, H, 1), F(3*s, H, 2), P(4*s, H, 1), F(5*s, H, 1), F(6*s, H, 2)}},
		{"healthy turns unhealthy at the threshold", noGrace, 0, []step{
			P(0, U, 1), P(1*s, H, 2), F(2*s, H, 1), F(3*s, H, 2), F(4*s, X, 3)}},
		{"healthy in grace does not turn unhealthy in grace", pol, 0, []step{
			P(1*s, U, 1), P(2*s, U, 2), P(3*s, H, 3), F(4*s, H, 0), F(5*s, H, 0), F(6*s, H, 0), F(10*s, H, 1), F(11*s, X, 2)}},
		{"further failures keep Since", noGrace, 0, []step{
			F(0, U, 1), F(1*s, U, 2), F(2*s, X, 3), F(3*s, X, 4), F(60*s, X, 5)}},
		{"unhealthy needs the full healthy threshold back", noGrace, 0, []step{
			F(0, U, 1), F(1*s, U, 2), F(2*s, X, 3), P(3*s, X, 1), F(4*s, X, 1), P(5*s, X, 1), P(6*s, H, 2)}},
		{"flapping", Policy{HealthyThreshold: 1, UnhealthyThreshold: 1}, 0, []step{
			P(0, H, 1), F(1*s, X, 1), P(2*s, H, 1), P(3*s, H, 2), F(4*s, X, 1), F(5*s, X, 2), P(6*s, H, 1)}},
		{"flapping below both thresholds stays unknown", pol, 0, []step{
			P(11*s, U, 1), F(12*s, U, 1), P(13*s, U, 1), P(14*s, U, 2), F(15*s, U, 1), P(16*s, U, 1)}},
		{"zero thresholds act as one", Policy{}, 0, []step{
			P(0, H, 1), F(1*s, X, 1), P(2*s, H, 1)}},
		{"negative thresholds act as one", Policy{HealthyThreshold: -5, UnhealthyThreshold: -1}, 0, []step{
			F(0, X, 1), P(1*s, H, 1), F(2*s, X, 1)}},
		{"threshold one from unknown", Policy{HealthyThreshold: 1, UnhealthyThreshold: 1, Grace: 5 * s}, 0, []step{
			F(1*s, U, 0), F(5*s, X, 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			since := t0.Add(tc.since)
			var o Observation
			if o.State != Unknown || o.State.String() != "unknown" {
				t.Fatalf("zero observation is %v", o.State)
			}
			var enteredAt time.Time // when the expected state was entered
			prev := Unknown
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				var err error
				if !st.pass {
					err = fmt.Errorf("probe %d: connection refused", i)
				}
				o = o.Record(now, err, tc.policy, since)
				if st.state != prev {
					enteredAt, prev = now, st.state
				}
				want := Observation{State: st.state, LastProbe: now, ConsecutivePass: st.passes, ConsecutiveFail: st.fails}
				if st.state != Unknown {
					want.Since = enteredAt
				}
				if err != nil {
					want.LastError = err.Error()
				}
				if o != want {
					t.Fatalf("after step %d (%v at %v):\n got %s\nwant %s", i, map[bool]string{true: "pass", false: "fail"}[st.pass], st.at, show(o, t0), show(want, t0))
				}
			}
		})
	}
}

func show(o Observation, t0 time.Time) string {
	since := "-"
	if !o.Since.IsZero() {
		since = o.Since.Sub(t0).String()
	}
	return fmt.Sprintf("%v since %s, last probe %v, passes %d, failures %d, error %q",
		o.State, since, o.LastProbe.Sub(t0), o.ConsecutivePass, o.ConsecutiveFail, o.LastError)
}

// TestRecordIsPure checks that Record returns a new value and leaves its
// receiver alone, so callers can compare before and after.
func TestRecordIsPure(t *testing.T) {
	now := time.Now()
	before := Observation{State: Healthy, Since: now, ConsecutivePass: 3}
	o := before
	after := o.Record(now.Add(time.Second), errors.New("refused"), Policy{}, now)
	if o != before {
		t.Fatalf("receiver changed: %+v", o)
	}
	if after.State != Unhealthy {
		t.Fatalf("record of a counted failure with threshold 1: %+v", after)
	}
}

func TestStateString(t *testing.T) {
	for st, want := range map[State]string{Unknown: "unknown", Healthy: "healthy", Unhealthy: "unhealthy", State(7): "State(7)"} {
		if got := st.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(st), got, want)
		}
	}
}
