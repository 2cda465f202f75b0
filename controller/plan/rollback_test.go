package plan

import (
	"cmp"
	"strings"
	"testing"
	"time"
)

// previous is what the rollout's servers recorded at their create, or,
// before any did, what most old servers run.
func TestPrevious(t *testing.T) {
	rec := func(s []Server, i int, img string) []Server {
		s[i].Previous = Ref{img, "rev"}
		return s
	}
	cases := []struct {
		name        string
		rollingBack bool
		before      string // Target.Before: what the reconciler last saw
		servers     []Server
		want        string
	}{
		{name: "the old servers' image before any new server recorded one", servers: fleet("oooc"), want: "old"},
		{name: "the old server deleted before the create (a group of one, max_surge 0): what was seen before", before: "old", servers: nil, want: "old"},
		{name: "what the servers say wins over what was seen", before: "stale", servers: fleet("oc"), want: "old"},
		{name: "what the new servers recorded wins over the old servers", servers: rec(rec(fleet("occ"), 1, "older"), 2, "older"), want: "older"},
		{name: "no old server and no record: nothing", servers: fleet("ccc")},
		{name: "on the way back, the rejected image's servers gone: the rejected image", rollingBack: true, servers: fleet("cc"), want: "bad"},
		{name: "a compromised old server does not vote", servers: func() []Server {
			s := fleet("oc")
			s[0].Compromised = "tampered"
			return s
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(3, 1, 0)
			if tc.rollingBack {
				tg.RollingBack, tg.Rejected = true, Ref{"bad", "rev"}
			}
			if tc.before != "" {
				tg.Before = Ref{tc.before, "rev"}
			}
			d := Plan(tg, tc.servers, t0)
			if d.Previous.ImageID != tc.want {
				t.Errorf("previous %v, want %q", d.Previous, tc.want)
			}
		})
	}
}

// sickAfterServing makes the current servers named by idx fail their
// check after serving, long enough to be healed.
func sickAfterServing(s []Server, ready time.Time, idx ...int) []Server {
	for i := range s {
		if s[i].ImageID == "new" {
			s[i].ReadyAt = ready
		}
	}
	for _, i := range idx {
		s[i].Health, s[i].UnhealthySince, s[i].HealthError = Unhealthy, t0.Add(-time.Minute), "HTTP 500"
	}
	return s
}

// A server of the new image that served and then fails its check counts
// against the failure budget while the rollout is watched, and only then.
func TestFailuresAfterTheGate(t *testing.T) {
	tg := target(3, 1, 0)
	tg.MaxFailures, tg.HealAfter, tg.MaxUnhealthy, tg.Watch = 3, 15*time.Second, 1, 10*time.Minute
	cases := []struct {
		name      string
		fleet     string
		ready     time.Time
		watch     time.Duration
		sick      []int
		progress  Progress
		tweak     func([]Server)
		wantCount int
		wantHalt  bool
	}{
		{name: "while the rollout is under way: counted however long it served", fleet: "occ", ready: t0.Add(-time.Hour), sick: []int{1}, wantCount: 1},
		{name: "a server that served long falls sick alone: healed, not counted, even next to a fresh one", ready: t0.Add(-time.Hour), sick: []int{0},
			tweak: func(s []Server) { s[1].ReadyAt = t0.Add(-time.Minute) }},
		{name: "within the watch: counted", ready: t0.Add(-5 * time.Minute), sick: []int{0}, wantCount: 1},
		{name: "after the watch: healed, not counted", ready: t0.Add(-11 * time.Minute), sick: []int{0}},
		{name: "watch 0: never counted", ready: t0.Add(-time.Minute), watch: -1, sick: []int{0}},
		{name: "the budget spent by servers failing after their gate halts", ready: t0.Add(-time.Minute), sick: []int{0},
			progress: Progress{Failures: 2, At: t0.Add(-time.Minute)}, wantCount: 3, wantHalt: true},
		{name: "too many sick at once for heal still count", ready: t0.Add(-time.Minute), sick: []int{0, 1, 2}, wantCount: 3, wantHalt: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := tg
			if tc.watch < 0 {
				tg.Watch = 0
			}
			tg.Progress = tc.progress
			servers := sickAfterServing(fleet(cmp.Or(tc.fleet, "ccc")), tc.ready, tc.sick...)
			if tc.tweak != nil {
				tc.tweak(servers)
			}
			d := Plan(tg, servers, t0)
			if d.Progress.Failures != tc.wantCount || (d.Halt != "") != tc.wantHalt {
				t.Errorf("failures %d, halt %q; want %d, halt %v", d.Progress.Failures, d.Halt, tc.wantCount, tc.wantHalt)
			}
			if tc.wantCount > tc.progress.Failures && !d.RecordProgress {
				t.Errorf("a failure counted and not recorded")
			}
		})
	}
}

// Within the watch the record outlives convergence: heal churn onto an
// image that cannot stay healthy adds up instead of starting over.
func TestRecordKeptWhileWatched(t *testing.T) {
	tg := target(3, 1, 0)
	tg.Watch, tg.Progress = 10*time.Minute, Progress{Failures: 1, At: t0.Add(-time.Minute)}
	if d := Plan(tg, sickAfterServing(fleet("ccc"), t0.Add(-time.Minute)), t0); !d.Status.Converged || d.RecordProgress {
		t.Errorf("converged within the watch: converged %v, record written %v %+v; want it kept", d.Status.Converged, d.RecordProgress, d.Progress)
	}
	if d := Plan(tg, sickAfterServing(fleet("ccc"), t0.Add(-11*time.Minute)), t0); !d.RecordProgress || !d.Progress.IsZero() {
		t.Errorf("the watch over: record %v %+v, want it cleared", d.RecordProgress, d.Progress)
	}
	// The round a server becomes ready is the start of the watch, before
	// its ready-at is recorded (this round): a group of one whose only
	// server replaced a sick one converges with none recorded yet.
	one := target(1, 1, 0)
	one.Watch, one.Progress = 10*time.Minute, tg.Progress
	if d := Plan(one, fleet("c"), t0); !d.Status.Converged || d.RecordProgress {
		t.Errorf("converged as its only server became ready: converged %v, record written %v %+v; want it kept", d.Status.Converged, d.RecordProgress, d.Progress)
	}
}

// A failed rollout with on_failure rollback rejects the image and goes
// back to the previous one; without one, or failing itself, it halts.
func TestRollbackOrHalt(t *testing.T) {
	spentBudget := Progress{Failures: 1, LastFailure: "failed: server is in ERROR", At: t0}
	cases := []struct {
		name       string
		tweak      func(*Target)
		servers    []Server
		wantReject string
		wantHalt   string
	}{
		{name: "halt by default", tweak: func(*Target) {}, servers: fleet("ooo"), wantHalt: "failure budget"},
		{name: "rollback to the old servers' image", tweak: func(t *Target) { t.Rollback = true }, servers: fleet("ooo"), wantReject: "old"},
		{name: "rollback to what the new servers recorded", tweak: func(t *Target) { t.Rollback = true }, servers: func() []Server {
			s := fleet("ccb")
			for i := range s {
				s[i].Previous = Ref{"older", "rev"}
			}
			return s
		}(), wantReject: "older"},
		{name: "nothing to roll back to: halt and say so", tweak: func(t *Target) { t.Rollback = true }, servers: fleet("ccb"),
			wantHalt: "no previous image on record"},
		{name: "the old servers gone before the creates: roll back to what was seen", tweak: func(t *Target) {
			t.Rollback, t.Before = true, Ref{"old", "rev"}
		}, servers: fleet("ccb"), wantReject: "old"},
		{name: "a spec change: the same image, halt", tweak: func(t *Target) { t.Rollback = true }, servers: func() []Server {
			s := fleet("ooo")
			for i := range s {
				s[i].ImageID, s[i].Revision = "new", "old-rev"
			}
			return s
		}(), wantHalt: "same image"},
		{name: "a rollback that fails halts: no ping-pong", tweak: func(t *Target) {
			t.Rollback, t.RollingBack, t.Rejected = true, true, Ref{"bad", "rev"}
		}, servers: fleet("ooo"), wantHalt: "the rollback from image bad failed too"},
		{name: "the image to go back to is gone: halt at once", tweak: func(t *Target) {
			t.Rollback, t.Progress, t.NoRollback = true, Progress{}, "cannot roll back: image old is gone from Glance"
		}, servers: fleet("ooo"), wantHalt: "gone from Glance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(3, 1, 0)
			tg.MaxFailures, tg.Progress = 1, spentBudget
			tc.tweak(&tg)
			d := Plan(tg, tc.servers, t0)
			if d.RollbackTo.ImageID != tc.wantReject || (d.Reject != "") != (tc.wantReject != "") {
				t.Errorf("reject %q to %v, want to %q", d.Reject, d.RollbackTo, tc.wantReject)
			}
			if !strings.Contains(d.Halt, tc.wantHalt) || (d.Halt != "") != (tc.wantHalt != "") {
				t.Errorf("halt %q, want one with %q", d.Halt, tc.wantHalt)
			}
			if len(d.Creates) != 0 {
				t.Errorf("%d creates in the round that fails the rollout", len(d.Creates))
			}
			if tc.wantReject != "" && (d.Status.Halted || !d.Status.RollingBack) {
				t.Errorf("status %+v: want rolling back, not halted", d.Status)
			}
		})
	}
}
