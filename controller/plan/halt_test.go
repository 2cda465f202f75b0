package plan

import (
	"strings"
	"testing"
	"time"
)

// failed returns n servers of the desired image and revision in ERROR.
func failed(n int) []Server {
	out := fleet(strings.Repeat("e", n))
	return out
}

func TestFailures(t *testing.T) {
	two := failed(2)
	other := failed(1)[0]
	other.ID, other.ImageID = "e-old", "old"
	compromised := failed(1)[0]
	compromised.ID, compromised.Compromised = "e-bad", "CVE"
	cases := []struct {
		name         string
		recorded     Progress
		servers      []Server
		wantFailures int
		wantCounted  int
		wantChanged  bool
	}{
		{name: "new failures are counted", servers: two, wantFailures: 2, wantCounted: 2, wantChanged: true},
		{name: "counted ones are not counted again", recorded: Progress{Failures: 2, Counted: []string{two[0].Boot(), two[1].Boot()}},
			servers: two, wantFailures: 2, wantCounted: 2},
		{name: "a counted boot that is gone is forgotten with the next write, its count kept", recorded: Progress{Failures: 2, Counted: []string{two[0].Boot(), two[1].Boot()}},
			servers: two[:1], wantFailures: 2, wantCounted: 1},
		{name: "another image's failure is not this rollout's", servers: []Server{other}},
		{name: "a compromised server is not the image's fault", servers: []Server{compromised}},
		{name: "at most MaxCounted at once", servers: failed(MaxCounted + 3), wantFailures: MaxCounted, wantCounted: MaxCounted, wantChanged: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(3, 1, 0)
			tg.Progress = tc.recorded
			var cs []Classified
			for _, s := range tc.servers {
				cs = append(cs, classify(tg, s, t0))
			}
			p, changed, counted := failures(tg, cs, t0)
			if p.Failures != tc.wantFailures || len(p.Counted) != tc.wantCounted || changed != tc.wantChanged {
				t.Errorf("failures %d counted %v changed %v, want %d, %d, %v", p.Failures, p.Counted, changed, tc.wantFailures, tc.wantCounted, tc.wantChanged)
			}
			if len(counted) != len(p.Counted) {
				t.Errorf("counted set %v does not match the record %v", counted, p.Counted)
			}
		})
	}
}

// A failed server goes only once its failure is in the record: the record
// is written before the delete, so no restart counts it twice.
func TestFailedServerGoesOnlyOnceCounted(t *testing.T) {
	tg := target(3, 1, 0)
	servers := append(fleet("ccc"), failed(MaxCounted+1)...)
	d := Plan(tg, servers, t0)
	if !d.RecordProgress || d.Progress.Failures != MaxCounted {
		t.Fatalf("record %v %+v", d.RecordProgress, d.Progress)
	}
	if len(d.Deletes) != MaxCounted {
		t.Errorf("%d deletes, want the %d counted failures only", len(d.Deletes), MaxCounted)
	}
	for _, x := range d.Deletes {
		if !strings.Contains(strings.Join(d.Progress.Counted, " "), x.Server.Boot()) {
			t.Errorf("deleted %s before its failure was counted", x.Server.ID)
		}
	}
}

// The failure budget is the rollout's: spent, the same round halts; a
// count read back after a restart is spent as well as one made in memory.
func TestFailureBudgetHalts(t *testing.T) {
	tg := target(3, 1, 0)
	tg.MaxFailures = 3
	tg.Progress = Progress{Failures: 2, LastFailure: "failed: server is in ERROR"}
	d := Plan(tg, append(fleet("oooc"[:3]), failed(1)...), t0)
	if d.Halt == "" || !d.Status.Halted || len(d.Creates) != 0 {
		t.Fatalf("halt %q, status %+v, %d creates: want halted with the third failure", d.Halt, d.Status, len(d.Creates))
	}
	if !strings.Contains(d.Halt, "3 new servers failed (failure budget 3; last: failed: server is in ERROR") || d.Progress.Failures != 3 || !d.RecordProgress {
		t.Errorf("halt %q progress %+v", d.Halt, d.Progress)
	}
	tg.Progress.Failures = 1
	if d := Plan(tg, append(fleet("ooo"), failed(1)...), t0); d.Halt != "" {
		t.Errorf("halted at the second failure of three: %q", d.Halt)
	}
}

func TestStalled(t *testing.T) {
	const deadline = 10 * time.Minute
	base := target(3, 0, 1)
	base.ProgressDeadline, base.Settle = deadline, 15*time.Second
	old := func() []Server {
		// Three old servers of unknown health and no room: nothing moves.
		return fleet("OOO")
	}
	cases := []struct {
		name    string
		tweak   func(*Target)
		servers func() []Server
		want    bool
	}{
		{name: "nothing for the deadline since this controller saw the rollout", tweak: func(t *Target) { t.WatchedSince = t0.Add(-11 * time.Minute) }, servers: old, want: true},
		{name: "within the deadline", tweak: func(t *Target) { t.WatchedSince = t0.Add(-9 * time.Minute) }, servers: old},
		{name: "a restart: the deadline runs from its first look, not the records before it", tweak: func(t *Target) {
			t.WatchedSince, t.Progress.At, t.Progress.Failures = t0.Add(-time.Minute), t0.Add(-time.Hour), 1
		}, servers: old},
		{name: "a failure counted lately is progress", tweak: func(t *Target) {
			t.WatchedSince, t.Progress.At, t.Progress.Failures = t0.Add(-time.Hour), t0.Add(-time.Minute), 1
		}, servers: old},
		{name: "a promotion lately is progress", tweak: func(t *Target) {
			t.WatchedSince, t.PromotedAt = t0.Add(-time.Hour), t0.Add(-time.Minute)
		}, servers: old},
		{name: "a new server ready lately is progress", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			s := fleet("OOOw")
			s[3].ReadyAt, s[3].Created = t0.Add(-time.Minute), t0.Add(-time.Hour)
			return s
		}},
		{name: "a new server ready, its record not written yet, is progress now", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			// Seen on a busy cloud: the create recorded more than the
			// deadline ago, the server healthy for min_ready this round.
			s := fleet("OOOc")
			s[3].Created = t0.Add(-time.Hour)
			return s
		}},
		{name: "a create lately is progress", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			s := fleet("OOOc")
			s[3].Created, s[3].ReadyAt = t0.Add(-time.Minute), t0.Add(-time.Minute)
			return s
		}},
		{name: "a new server booting is its own deadline's", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			s := fleet("OOOb")
			s[3].Created = t0.Add(-time.Hour)
			return s
		}},
		{name: "waiting for a full quota is not a stall", tweak: func(t *Target) {
			t.WatchedSince, t.QuotaWait = t0.Add(-3*deadline), "Quota exceeded for instances"
		}, servers: old},
		{name: "the deadline runs again from the end of a quota wait", tweak: func(t *Target) {
			t.WatchedSince, t.QuotaFreed = t0.Add(-3*deadline), t0.Add(-time.Minute)
		}, servers: old},
		{name: "a quota wait long over does not excuse a stall", tweak: func(t *Target) {
			t.WatchedSince, t.QuotaFreed = t0.Add(-3*deadline), t0.Add(-deadline-time.Minute)
		}, servers: old, want: true},
		{name: "a location waiting for the budgets its group's other locations hold is no stall", tweak: func(t *Target) {
			t.WatchedSince, t.Sharing = t0.Add(-3*deadline), "the group's surge and unavailability are held by its other locations"
		}, servers: old},
		{name: "the deadline runs again from the end of a location's wait for budget", tweak: func(t *Target) {
			t.WatchedSince, t.SharingEnded = t0.Add(-3*deadline), t0.Add(-time.Minute)
		}, servers: old},
		{name: "a wait for budget long over does not excuse a stall", tweak: func(t *Target) {
			t.WatchedSince, t.SharingEnded = t0.Add(-3*deadline), t0.Add(-deadline-time.Minute)
		}, servers: old, want: true},
		{name: "the deadline runs again from the round after fencing refused a step", tweak: func(t *Target) {
			t.WatchedSince, t.Unfenced = t0.Add(-3*deadline), t0.Add(-time.Minute)
		}, servers: old},
		{name: "fencing long over does not excuse a stall", tweak: func(t *Target) {
			t.WatchedSince, t.Unfenced = t0.Add(-3*deadline), t0.Add(-deadline-time.Minute)
		}, servers: old, want: true},
		{name: "the deadline runs again from the end of a handover", tweak: func(t *Target) {
			t.WatchedSince, t.HandoverEnded = t0.Add(-3*deadline), t0.Add(-time.Minute)
		}, servers: old},
		{name: "a handover long over does not excuse a stall", tweak: func(t *Target) {
			t.WatchedSince, t.HandoverEnded = t0.Add(-3*deadline), t0.Add(-deadline-time.Minute)
		}, servers: old, want: true},
		{name: "replacements kept back by steering are no stall", tweak: func(t *Target) {
			t.WatchedSince, t.Held = t0.Add(-3*deadline), "by alice at 2026-01-01T00:00:00Z: freeze"
		}, servers: old},
		{name: "the deadline runs again from the end of a steering wait", tweak: func(t *Target) {
			t.WatchedSince, t.Undeferred = t0.Add(-3*deadline), t0
		}, servers: old},
		{name: "a steering wait long over does not excuse a stall", tweak: func(t *Target) {
			t.WatchedSince, t.Undeferred = t0.Add(-3*deadline), t0.Add(-deadline-time.Minute)
		}, servers: old, want: true},
		{name: "a server that served, running again and not ready yet, is on its way", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			// Back from a handover rolled back: started again, its check
			// not passed yet (or not for min_ready).
			s := fleet("OOOc")
			s[3].Created, s[3].ReadyAt, s[3].Health = t0.Add(-2*time.Hour), t0.Add(-2*time.Hour), HealthUnknown
			return s
		}},
		{name: "a server that served and fails its check is not on its way", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			s := fleet("OOOc")
			s[3].Created, s[3].ReadyAt, s[3].Health, s[3].UnhealthySince = t0.Add(-2*time.Hour), t0.Add(-2*time.Hour), Unhealthy, t0
			return s
		}, want: true},
		{name: "the desired servers all serve, old ones left to go: nothing to wait for", tweak: func(t *Target) { t.WatchedSince = t0.Add(-time.Hour) }, servers: func() []Server {
			s := fleet("cccO")
			for i := range 3 {
				s[i].Created, s[i].ReadyAt = t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)
			}
			return s
		}},
		{name: "a volume on its way back to a current server stopped for it is on its way", tweak: func(t *Target) {
			// The group rolled back while the volume moved off it.
			t.WatchedSince, t.InFlight = t0.Add(-time.Hour), []InFlight{{Volume: "v1", From: "c03", To: "gone", Step: "rollback"}}
		}, servers: func() []Server {
			s := fleet("OOOc")
			s[3].ID, s[3].Status, s[3].Created, s[3].ReadyAt = "c03", StatusShutoff, t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)
			return s
		}},
		{name: "a failure this round is the budget's", tweak: func(t *Target) { t.WatchedSince, t.MaxFailures = t0.Add(-time.Hour), 5 }, servers: func() []Server {
			return append(fleet("OOO"), failed(1)...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := base
			tc.tweak(&tg)
			d := Plan(tg, tc.servers(), t0)
			if got := strings.Contains(d.Halt, "progress_deadline"); got != tc.want {
				t.Errorf("halt %q (status %+v), want stalled %v", d.Halt, d.Status, tc.want)
			}
		})
	}
}

// The rollout's record is cleared once the group has converged: the
// failure budget is the rollout's.
func TestRolloutRecordClearedAtConvergence(t *testing.T) {
	tg := target(3, 1, 0)
	tg.Progress = Progress{Failures: 2, At: t0.Add(-time.Hour)}
	if d := Plan(tg, fleet("ooo"), t0); d.RecordProgress || d.Progress.Failures != 2 {
		t.Errorf("a rollout under way: record %v %+v, want it kept", d.RecordProgress, d.Progress)
	}
	if d := Plan(tg, fleet("ccc"), t0); !d.RecordProgress || !d.Progress.IsZero() {
		t.Errorf("converged: record %v %+v, want it cleared", d.RecordProgress, d.Progress)
	}
	tg.Progress = Progress{}
	if d := Plan(tg, fleet("ccc"), t0); d.RecordProgress {
		t.Errorf("converged without a record: writes one")
	}
}
