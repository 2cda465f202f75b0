package healthcheck

import (
	"errors"
	"testing"
	"time"
)

func TestRecordVerdicts(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	policy := Policy{HealthyThreshold: 3, UnhealthyThreshold: 2, Grace: 10 * time.Second}
	fail := errors.New("connection refused")
	type step struct {
		at   time.Duration // after t0 (the server became ACTIVE at t0)
		pass bool
	}
	cases := []struct {
		name      string
		policy    Policy
		steps     []step
		want      State
		wantSince time.Duration
		wantFails int
	}{
		{name: "no probes", policy: policy, want: Unknown},
		{name: "two passes are not enough", policy: policy, steps: []step{{1, true}, {2, true}}, want: Unknown},
		{name: "three passes make it healthy", policy: policy, steps: []step{{1, true}, {2, true}, {3, true}}, want: Healthy, wantSince: 3},
		{name: "a failure resets the passes", policy: policy, steps: []step{{1, true}, {2, true}, {3, false}, {4, true}, {5, true}}, want: Unknown},
		{name: "failures in grace do not count", policy: policy, steps: []step{{1, false}, {2, false}, {9, false}}, want: Unknown},
		{name: "failures at the end of grace count", policy: policy, steps: []step{{10 * 1e9, false}, {11 * 1e9, false}}, want: Unhealthy, wantSince: 11 * 1e9, wantFails: 2},
		{name: "one failure just before grace ends does not count", policy: policy, steps: []step{{10*1e9 - 1, false}, {11 * 1e9, false}}, want: Unknown, wantFails: 1},
		{name: "passes in grace count", policy: policy, steps: []step{{1, true}, {2, true}, {3, true}}, want: Healthy, wantSince: 3},
		{name: "healthy survives fewer failures than the threshold", policy: policy, steps: []step{{1, true}, {2, true}, {3, true}, {20e9, false}}, want: Healthy, wantSince: 3, wantFails: 1},
		{name: "healthy turns unhealthy at the threshold", policy: policy, steps: []step{{1, true}, {2, true}, {3, true}, {20e9, false}, {21e9, false}}, want: Unhealthy, wantSince: 21e9, wantFails: 2},
		{name: "unhealthy needs the full healthy threshold back", policy: policy, steps: []step{{20e9, false}, {21e9, false}, {22e9, true}, {23e9, true}}, want: Unhealthy, wantSince: 21e9},
		{name: "flap back to healthy", policy: policy, steps: []step{{20e9, false}, {21e9, false}, {22e9, true}, {23e9, true}, {24e9, true}}, want: Healthy, wantSince: 24e9},
		{name: "zero thresholds act as one", policy: Policy{}, steps: []step{{1, true}}, want: Healthy, wantSince: 1},
		{name: "zero thresholds: one failure after no grace", policy: Policy{}, steps: []step{{1, false}}, want: Unhealthy, wantSince: 1, wantFails: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o Observation
			for _, s := range tc.steps {
				var err error
				if !s.pass {
					err = fail
				}
				o = o.Record(t0.Add(s.at), err, tc.policy, t0)
			}
			if o.State != tc.want {
				t.Fatalf("state = %v, want %v (%+v)", o.State, tc.want, o)
			}
			if tc.want != Unknown && !o.Since.Equal(t0.Add(tc.wantSince)) {
				t.Errorf("since = %v, want %v", o.Since.Sub(t0), tc.wantSince)
			}
			if o.ConsecutiveFail != tc.wantFails {
				t.Errorf("consecutive failures = %d, want %d", o.ConsecutiveFail, tc.wantFails)
			}
			if len(tc.steps) > 0 {
				last := tc.steps[len(tc.steps)-1]
				if last.pass != (o.LastError == "") {
					t.Errorf("last error = %q after a pass=%v", o.LastError, last.pass)
				}
			}
		})
	}
}
