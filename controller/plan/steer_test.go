package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// steered is a group of four on the old image, asked to go to "new".
func steered() (Target, []Server) {
	tgt := Target{Count: 4, MaxSurge: 1, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev", MaxFailures: 3,
		ProgressDeadline: time.Minute, WatchedSince: t0, HealAfter: time.Second, MaxUnhealthy: 1}
	var servers []Server
	for i := range 4 {
		servers = append(servers, Server{ID: fmt.Sprintf("old%d", i), Status: StatusActive, ImageID: "old", Revision: "rev",
			Created: t0.Add(-48 * time.Hour), ReadyAt: t0.Add(-47 * time.Hour), Health: Healthy, HealthySince: t0.Add(-47 * time.Hour)})
	}
	return tgt, servers
}

func replacing(d Decision) []string {
	var ids []string
	for _, x := range d.Deletes {
		ids = append(ids, "delete "+x.Server.ID)
	}
	for _, x := range d.Drains {
		ids = append(ids, "drain "+x.Server.ID)
	}
	for _, x := range d.Reimages {
		ids = append(ids, "rebuild "+x.Server.ID)
	}
	if len(d.Creates) > 0 {
		ids = append(ids, fmt.Sprintf("create %d", len(d.Creates)))
	}
	return ids
}

func TestSteering(t *testing.T) {
	current := func(id string) Server {
		return Server{ID: id, Status: StatusActive, ImageID: "new", Revision: "rev", Created: t0.Add(-time.Hour),
			ReadyAt: t0.Add(-50 * time.Minute), Health: Healthy, HealthySince: t0.Add(-50 * time.Minute)}
	}
	// Berlin's window opens at 02:00; t0 is 13:00 there.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	night := Window{Days: [7]bool{true, true, true, true, true, true, true}, Start: 2 * time.Hour, End: 5 * time.Hour, Loc: berlin, Text: "daily 02:00-05:00 Europe/Berlin"}
	for _, tc := range []struct {
		name  string
		steer func(*Target, []Server) []Server
		want  []string // the steps taken, in replacing's words
		check func(*testing.T, Decision)
	}{
		{name: "free: the rollout starts", steer: func(*Target, []Server) []Server { return nil }, want: []string{"create 1"}},
		{name: "held: nothing starts", steer: func(t *Target, _ []Server) []Server { t.Held = "by ops at noon: release freeze"; return nil },
			check: func(t *testing.T, d Decision) {
				if d.Status.Deferred != 4 || !strings.HasPrefix(d.Status.Steering, "held: by ops") || d.Status.Converged || d.Halt != "" {
					t.Errorf("status %+v halt %q", d.Status, d.Halt)
				}
			}},
		{name: "blocked: nothing starts", steer: func(t *Target, _ []Server) []Server { t.Blocked = "ALERTS 1 series"; return nil },
			check: func(t *testing.T, d Decision) {
				if d.Status.Deferred != 4 || d.Status.Steering != "blocked: ALERTS 1 series" {
					t.Errorf("status %+v", d.Status)
				}
			}},
		{name: "outside the window: nothing starts until it opens", steer: func(t *Target, _ []Server) []Server { t.Windows = []Window{night}; return nil },
			check: func(t *testing.T, d Decision) {
				opens := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
				if !d.Status.NextWindow.Equal(opens) || d.Status.Deferred != 4 || !strings.Contains(d.Status.Steering, "2026-11-26T01:00:00Z") {
					t.Errorf("status %+v", d.Status)
				}
				if d.RequeueAfter <= 0 || d.RequeueAfter > opens.Sub(t0) {
					t.Errorf("requeue after %s, the window opens in %s", d.RequeueAfter, opens.Sub(t0))
				}
			}},
		{name: "inside the window: the rollout starts", steer: func(t *Target, _ []Server) []Server {
			night.Start, night.End = 12*time.Hour, 14*time.Hour
			t.Windows = []Window{night}
			return nil
		}, want: []string{"create 1"}},
		{name: "held: a replacement under way finishes, no other starts", steer: func(t *Target, s []Server) []Server {
			t.Held = "x"
			return append(s, current("new0"))
		}, want: []string{"delete old0"}},
		{name: "held: a sick server is healed", steer: func(t *Target, s []Server) []Server {
			t.Held = "x"
			t.ImageID = "old"
			s[2].Health, s[2].UnhealthySince = Unhealthy, t0.Add(-time.Minute)
			return s
		}, want: []string{"delete old2", "create 1"}},
		{name: "held: a compromised server goes at once", steer: func(t *Target, s []Server) []Server {
			t.Held = "x"
			s[1].Compromised = "CVE"
			return s
		}, want: []string{"delete old1", "create 1"}},
		{name: "held: an urgent patch does not wait", steer: func(t *Target, s []Server) []Server {
			t.Held, t.ImageID = "x", "old"
			t.Forces = []Force{{Before: t0, Reason: "CVE-1", Urgent: true}}
			return s
		}, want: []string{"create 1"}},
		{name: "held: an urgent rebuild under way takes no drifted server with it", steer: func(t *Target, s []Server) []Server {
			t.Held, t.ImageID = "x", "old"
			for i := range s {
				s[i].RebuildMark = "CVE-1"
			}
			s[0].RebuildUrgent = true
			r := current("r0")
			r.ImageID = "old"
			return append(s, r)
		}, want: []string{"delete old0"}, check: func(t *testing.T, d Decision) {
			if d.Status.Deferred != 3 {
				t.Errorf("%d deferred, want 3", d.Status.Deferred)
			}
		}},
		{name: "held: a patch without urgency waits", steer: func(t *Target, s []Server) []Server {
			t.Held, t.ImageID = "x", "old"
			t.Forces = []Force{{Before: t0, Reason: "CVE-1"}}
			return s
		}},
		{name: "held: an urgent mark on a server does not wait", steer: func(t *Target, s []Server) []Server {
			t.Held, t.ImageID = "x", "old"
			s[3].RebuildMark, s[3].RebuildUrgent = "CVE-2", true
			return s
		}, want: []string{"create 1"}},
		{name: "protected: left as it is, the group converges around it", steer: func(t *Target, s []Server) []Server {
			s[0].Protected = "debugging"
			return []Server{s[0], current("new1"), current("new2"), current("new3")}
		}, check: func(t *testing.T, d Decision) {
			if !d.Status.Converged || d.Status.Protected != 1 || d.Servers[0].Kind != KindKept || d.Servers[0].Kept != "protected: debugging" {
				t.Errorf("status %+v, kept %v %q", d.Status, d.Servers[0].Kind, d.Servers[0].Kept)
			}
		}},
		{name: "protected: never surplus", steer: func(t *Target, s []Server) []Server {
			t.Count = 2
			p := current("new0")
			p.Protected = "licence"
			p.Created = t0.Add(-time.Minute) // the newest: surplus would pick it first
			return []Server{current("new1"), current("new2"), p}
		}, want: []string{"delete new2"}},
		{name: "protected: never healed, its capacity replaced", steer: func(t *Target, s []Server) []Server {
			t.ImageID = "old"
			s[0].Protected = "debugging"
			s[0].Health, s[0].UnhealthySince = Unhealthy, t0.Add(-time.Minute)
			return s
		}, want: []string{"create 1"}},
		{name: "protected: in ERROR, kept", steer: func(t *Target, s []Server) []Server {
			t.ImageID = "old"
			s[0].Protected, s[0].Status = "debugging", StatusError
			return s
		}, want: []string{"create 1"}},
		{name: "protected but compromised: it goes", steer: func(t *Target, s []Server) []Server {
			s[0].Protected, s[0].Compromised = "debugging", "intrusion"
			return s
		}, want: []string{"delete old0", "create 1"}},
		{name: "protected: a delete decided earlier is not resumed", steer: func(t *Target, s []Server) []Server {
			t.ImageID = "old"
			s[0].Protected, s[0].Phase = "debugging", PhaseDeleting
			return s
		}, want: []string{"create 1"}},
		{name: "protected: named by a patch, still kept", steer: func(t *Target, s []Server) []Server {
			t.ImageID = "old"
			t.Forces = []Force{{Before: t0, Servers: []string{"old0"}, Reason: "named", Urgent: true}}
			s[0].Protected = "debugging"
			return s
		}, check: func(t *testing.T, d Decision) {
			if !d.Status.Converged || d.Status.Protected != 1 {
				t.Errorf("status %+v", d.Status)
			}
		}},
		{name: "a run naming its servers leaves the other drifted ones", steer: func(t *Target, s []Server) []Server {
			t.Only = []string{"old1"}
			return s
		}, want: []string{"create 1"}, check: func(t *testing.T, d Decision) {
			for _, c := range d.Servers {
				if (c.Kind == KindOld) != (c.ID == "old1") || c.ID != "old1" && !strings.HasPrefix(c.Kept, "not named") {
					t.Errorf("server %s is %s (%q)", c.ID, c.Kind, c.Kept)
				}
			}
		}},
		{name: "a run naming its servers ends once they are replaced", steer: func(t *Target, s []Server) []Server {
			t.Only = []string{"old1"}
			return []Server{s[0], current("n1"), s[2], s[3]}
		}, check: func(t *testing.T, d Decision) {
			if !d.Status.Converged {
				t.Errorf("status %+v, want converged", d.Status)
			}
		}},
		{name: "named: only the servers named are replaced", steer: func(t *Target, s []Server) []Server {
			t.ImageID, t.MaxSurge = "old", 4
			t.Forces = []Force{{Before: t0, Servers: []string{"old1", "old3"}, Reason: "named"}}
			return s
		}, want: []string{"create 2"}, check: func(t *testing.T, d Decision) {
			for _, c := range d.Servers {
				if want := c.ID == "old1" || c.ID == "old3"; (c.Kind == KindOld) != want {
					t.Errorf("server %s is %s", c.ID, c.Kind)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt, servers := steered()
			if s := tc.steer(&tgt, servers); s != nil {
				servers = s
			}
			d := Plan(tgt, servers, t0)
			if got := replacing(d); !slices.Equal(got, tc.want) {
				t.Errorf("steps %q, want %q (status %+v)", got, tc.want, d.Status)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
		})
	}
}

// TestSteeringSequences steps random worlds through holds (or blockers,
// or windows: the plan sees them alike) that come and go, with protected
// servers among the old ones. While steered, no voluntary replacement
// starts: nothing is created but what a replacement under way left
// missing (nothing fails or falls sick here), and the
// drifted servers left serving never drop below what the group needs
// beside the replacements that were under way when the hold began. A
// protected server is never in a delete, a drain or a rebuild. Released,
// every world converges with its protected servers left as they are.
func TestSteeringSequences(t *testing.T) {
	for seed := range uint64(400) {
		rng := rand.New(rand.NewPCG(seed, 77))
		traffic := seed%2 == 1
		count := 1 + rng.IntN(8)
		surge, unavailable := rng.IntN(3), rng.IntN(3)
		if surge == 0 && unavailable == 0 {
			surge = 1
		}
		unavailable = min(unavailable, count)
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev",
			MaxFailures: 1000, Traffic: traffic, Drain: 30 * time.Second}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		protected := map[string]bool{}
		for i := range count {
			w.add("old", StatusActive, Healthy)
			if rng.IntN(4) == 0 {
				id := fmt.Sprintf("s%04d", i)
				w.servers[id].Protected = "seed"
				protected[id] = true
			}
		}
		var floor int // drifted servers that must stay while steered
		converged := false
		for step := 0; step < 3000; step++ {
			steeredNow := step < 1500 && (step/40)%2 == 1
			if steeredNow && (step%40 == 0) {
				drifted, current := 0, 0
				for _, s := range w.servers {
					switch {
					case s.ImageID == "new":
						current++
					case s.Phase == "" && s.TaskState == "" && !protected[s.ID]:
						drifted++
					}
				}
				floor = max(0, min(drifted, count-current-len(protected)))
			}
			tgt.Held = ""
			if steeredNow {
				tgt.Held = "seed"
			}
			d := Plan(tgt, w.list(), w.now)
			for _, id := range replacing(d) {
				if f := strings.Fields(id); f[0] != "create" && protected[f[1]] {
					t.Fatalf("seed %d step %d: protected server in a step: %s", seed, step, id)
				}
			}
			// Only what a replacement under way left missing is created.
			live := 0
			for _, s := range w.servers {
				if s.Phase == "" && s.TaskState == "" {
					live++
				}
			}
			if steeredNow && len(d.Creates) > max(0, count-live) {
				t.Fatalf("seed %d step %d: %d creates while held, %d of %d servers stay (status %+v)", seed, step, len(d.Creates), live, count, d.Status)
			}
			w.apply(d)
			if steeredNow {
				drifted := 0
				for _, s := range w.servers {
					if s.ImageID != "new" && s.Phase == "" && s.TaskState == "" && !protected[s.ID] {
						drifted++
					}
				}
				if drifted < floor {
					t.Fatalf("seed %d step %d: %d drifted servers left while held, %d must stay", seed, step, drifted, floor)
				}
			}
			if total := len(w.servers); total > count+surge {
				t.Fatalf("seed %d step %d: %d servers exceed count %d + surge %d", seed, step, total, count, surge)
			}
			if serving := w.serving(); serving < count-unavailable {
				t.Fatalf("seed %d step %d: %d serving servers, below count %d - max_unavailable %d", seed, step, serving, count, unavailable)
			}
			if !steeredNow && step >= 1500 && d.Status.Converged {
				converged = true
				break
			}
			w.advance(0)
		}
		if !converged {
			t.Fatalf("seed %d (count %d surge %d unavailable %d): did not converge: %+v", seed, count, surge, unavailable, Plan(tgt, w.list(), w.now).Status)
		}
		for id, s := range w.servers {
			if s.ImageID != "new" && !protected[id] || protected[id] && s.ImageID != "old" {
				t.Fatalf("seed %d: server %s on %s after convergence (protected %v)", seed, id, s.ImageID, protected[id])
			}
		}
		if got := Plan(tgt, w.list(), w.now).Status.Protected; got != len(protected) {
			t.Fatalf("seed %d: %d protected servers reported, %d protected", seed, got, len(protected))
		}
	}
}

// TestSteeringHealsAndQuarantinesWhileHeld steps random worlds that stay
// held throughout while servers fall sick for good or are found
// compromised (a protected one too): a compromised server is deleted in
// the very round that sees it, a sick one is replaced, and nothing is
// created beyond what they and the replacements under way leave
// missing; the servers no one drifted from stay.
func TestSteeringHealsAndQuarantinesWhileHeld(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 78))
		traffic := seed%2 == 1
		count := 2 + rng.IntN(7)
		surge, unavailable := 1+rng.IntN(2), rng.IntN(2)
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev",
			MaxFailures: 1000, Traffic: traffic, Drain: 30 * time.Second, MaxUnhealthy: count, Held: "seed"}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		for i := range count {
			w.add("old", StatusActive, Healthy)
			w.servers[fmt.Sprintf("s%04d", i)].ReadyAt = t0
			if rng.IntN(4) == 0 {
				w.servers[fmt.Sprintf("s%04d", i)].Protected = "seed"
			}
		}
		sick := map[string]bool{}
		for step := 0; step < 600; step++ {
			if step%30 == 10 {
				ids := w.list()
				s := w.servers[ids[rng.IntN(len(ids))].ID]
				switch {
				case s.Phase != "" || s.TaskState != "" || s.Compromised != "" || sick[s.ID]:
				case rng.IntN(2) == 0:
					s.Compromised = "seed"
				case s.Status == StatusActive && s.Served():
					sick[s.ID] = true
				}
			}
			for id := range sick {
				if s, ok := w.servers[id]; ok && s.Phase == "" {
					s.Health, s.UnhealthySince = Unhealthy, cmpOr(s.UnhealthySince, w.now)
				}
			}
			d := Plan(tgt, w.list(), w.now)
			gone := map[string]bool{}
			for _, x := range d.Deletes {
				gone[x.Server.ID] = true
			}
			for _, x := range d.Drains {
				gone[x.Server.ID] = true
			}
			live := 0
			for _, s := range w.servers {
				if s.Compromised != "" && s.Phase == "" && s.TaskState == "" && !gone[s.ID] {
					t.Fatalf("seed %d step %d: compromised server %s (protected %q) not taken out while held", seed, step, s.ID, s.Protected)
				}
				if s.Protected != "" && s.Compromised == "" && gone[s.ID] {
					t.Fatalf("seed %d step %d: protected server %s taken out", seed, step, s.ID)
				}
				if s.Phase == "" && s.TaskState == "" && s.Compromised == "" && !sick[s.ID] {
					live++
				}
			}
			if len(d.Creates) > max(0, count-live) {
				t.Fatalf("seed %d step %d: %d creates while held, %d of %d servers stay (status %+v)", seed, step, len(d.Creates), live, count, d.Status)
			}
			w.apply(d)
			w.advance(0)
		}
		for id := range sick {
			if s, ok := w.servers[id]; ok && s.Protected == "" && s.Phase == "" && s.TaskState == "" {
				t.Fatalf("seed %d: sick server %s never healed while held (status %+v)", seed, id, Plan(tgt, w.list(), w.now).Status)
			}
		}
	}
}

func cmpOr(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}
