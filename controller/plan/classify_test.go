package plan

import (
	"cmp"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDriftReasons(t *testing.T) {
	cut := t0.Add(-time.Minute)
	patchAt := t0.Add(-2 * time.Minute)
	cases := []struct {
		name   string
		server Server
		want   string
	}{
		{"current", Server{ImageID: "new", Revision: "rev", Created: t0}, ""},
		{"image", Server{ImageID: "old", Revision: "rev", Created: t0}, "image old is not the desired new"},
		{"revision", Server{ImageID: "new", Revision: "r0", Created: t0}, "spec revision r0 is not the desired rev"},
		{"no revision recorded", Server{ImageID: "new", Created: t0}, "spec revision (none) is not the desired rev"},
		{"forced rebuild", Server{ImageID: "new", Revision: "rev", Created: cut.Add(-time.Second)}, "before the rebuild requested at"},
		{"created after the cutoff", Server{ImageID: "new", Revision: "rev", Created: cut.Add(time.Nanosecond)}, ""},
		{"marked by an event", Server{ImageID: "new", Revision: "rev", Created: t0, RebuildMark: "security patch CVE-2"}, "rebuild requested: security patch CVE-2"},
		{"a patch before its signed time", Server{ImageID: "new", Revision: "rev", Created: patchAt.Add(-time.Second)}, "rebuild requested: patch"},
		{"a patch after its signed time designates nothing", Server{ImageID: "new", Revision: "rev", Created: t0}, ""},
		{"a twin of a compromised server", Server{ID: "tw", ImageID: "new", Revision: "rev", Created: patchAt.Add(-time.Hour)}, "rebuild requested: patch"},
	}
	tgt := Target{ImageID: "new", Revision: "rev", RebuildBefore: cut, RebuildReason: "CVE-2026-0001",
		Forces: []Force{{Before: patchAt, ImageID: "other", Revision: "rev", Reason: "twin"}, {Before: patchAt, Reason: "patch"}}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Drift(tgt, tc.server)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("Drift = %q, want %q", got, tc.want)
			}
		})
	}
}

// max_age: a fleet built at one moment comes due over a fifth of max_age,
// not at one instant; and what is due is replaced within the bounds.
func TestPlanMaxAgeSpreadsAndKeepsBounds(t *testing.T) {
	const week = 7 * 24 * time.Hour
	tgt := target(100, 10, 0)
	tgt.MaxAge = week
	built := t0.Add(-week)
	var servers []Server
	for i := range 100 {
		servers = append(servers, Server{ID: fmt.Sprintf("srv-%03d", i), Status: StatusActive, ImageID: "new", Revision: "rev",
			Created: built, Health: Healthy, HealthySince: built})
	}
	due := func(at time.Time) int {
		n := 0
		for _, s := range servers {
			if tooOldAt(tgt, s, at) {
				n++
			}
		}
		return n
	}
	if n := due(built.Add(week * 79 / 100)); n != 0 {
		t.Errorf("%d servers due before 80%% of max_age", n)
	}
	if n := due(built.Add(week * 90 / 100)); n < 20 || n > 80 {
		t.Errorf("%d of 100 due at 90%% of max_age: want them spread, not all at once", n)
	}
	if n := due(built.Add(week)); n != 100 {
		t.Errorf("%d of 100 due at max_age, want all", n)
	}
	d := Plan(tgt, servers, t0)
	if d.Status.Old != 100 || len(d.Creates) != 10 || len(d.Deletes) != 0 {
		t.Errorf("at max_age: %d old, %d creates, %d deletes; want 100 old replaced 10 at a time, none deleted before a replacement", d.Status.Old, len(d.Creates), len(d.Deletes))
	}
	if !strings.HasPrefix(d.Servers[0].Reason, "age: ") {
		t.Errorf("reason %q", d.Servers[0].Reason)
	}
}

func tooOldAt(t Target, s Server, at time.Time) bool {
	return Plan(t, []Server{s}, at).Status.Old == 1
}

// A server that missed its progress deadline without ever being ready is
// failed — once this controller has watched it for the deadline: a daemon
// that starts after a replacement's deadline passed (it was down) must
// look at it for a deadline of its own before it judges (and deletes) a
// server that may serve fine.
func TestClassifyProgressDeadline(t *testing.T) {
	tg := target(3, 1, 0)
	tg.ProgressDeadline = 10 * time.Minute
	now := t0
	for _, tc := range []struct {
		name       string
		status     string
		health     Health
		age        time.Duration // since its create
		watched    time.Duration // since this controller first listed it
		wantFailed bool
		image      string // "" for the desired one
		served     bool
	}{
		{"unknown health, watched all along, past the deadline", StatusActive, HealthUnknown, 11 * time.Minute, 11 * time.Minute, true, "", false},
		{"unhealthy, watched all along, past the deadline", StatusActive, Unhealthy, 11 * time.Minute, 11 * time.Minute, true, "", false},
		{"stuck in BUILD, watched all along, past the deadline", StatusBuild, HealthUnknown, 11 * time.Minute, 11 * time.Minute, true, "", false},
		{"past the deadline, watched a minute (the daemon just started)", StatusActive, HealthUnknown, 11 * time.Minute, time.Minute, false, "", false},
		{"unhealthy past the deadline, watched a minute", StatusActive, Unhealthy, 11 * time.Minute, time.Minute, false, "", false},
		{"stuck in BUILD past the deadline, watched a minute", StatusBuild, HealthUnknown, 11 * time.Minute, time.Minute, false, "", false},
		{"within the deadline", StatusActive, Unhealthy, time.Minute, time.Minute, false, "", false},
		{"healthy past the deadline", StatusActive, Healthy, 11 * time.Minute, 11 * time.Minute, false, "", false},
		// A server left old while it booted (a newer image, an urgent
		// rebuild of everything created before it) fails the same way:
		// held as old, it would keep its surge slot for good.
		{"an older image's server stuck in BUILD past the deadline", StatusBuild, HealthUnknown, 11 * time.Minute, 11 * time.Minute, true, "older", false},
		{"an older image's server stuck in BUILD within the deadline", StatusBuild, HealthUnknown, time.Minute, time.Minute, false, "older", false},
		{"an older image's server that served, unhealthy past the deadline", StatusActive, Unhealthy, 11 * time.Minute, 11 * time.Minute, false, "older", true},
		{"an older image's ACTIVE server with no ready record, unhealthy past the deadline", StatusActive, Unhealthy, 11 * time.Minute, 11 * time.Minute, false, "older", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Server{ID: "s1", Name: "srv-1", Status: tc.status, ImageID: cmp.Or(tc.image, "new"), Revision: "rev",
				Created: now.Add(-tc.age), WatchedSince: now.Add(-tc.watched), Health: tc.health, HealthySince: now.Add(-time.Hour)}
			if tc.served {
				s.ReadyAt = now.Add(-tc.age / 2)
			}
			c := classify(tg, s, now)
			if got := c.Kind == KindFailed; got != tc.wantFailed {
				t.Errorf("failed = %v (%s: %s), want %v", got, c.Kind, c.Reason, tc.wantFailed)
			}
		})
	}
}

// Heal replaces a current server that served and has been sick for
// HealAfter — failing its check, or stopped, paused or suspended behind
// Phoenix's back — unless more than MaxUnhealthy are sick at once.
func TestHeal(t *testing.T) {
	tg := target(3, 1, 0)
	tg.MaxUnhealthy, tg.HealAfter = 1, 15*time.Second
	served := t0.Add(-time.Hour)
	sickFor := func(status string, health Health, since time.Duration) Server {
		s := fleet("c")[0]
		s.ID, s.Status, s.Health, s.ReadyAt, s.UnhealthySince = "x99", status, health, served, t0.Add(-since)
		return s
	}
	cases := []struct {
		name      string
		server    func() Server
		inFlight  []InFlight
		extraSick int
		// maxUnhealthy replaces the target's when not 0; -2 stands for 0.
		maxUnhealthy int
		wantOld      bool
		wantBlocked  bool
		wantReason   string
	}{
		{name: "failing its check past heal_after", server: func() Server { return sickFor(StatusActive, Unhealthy, 20*time.Second) },
			wantOld: true, wantReason: "unhealthy: failed its health check after serving"},
		{name: "failing its check, not yet heal_after", server: func() Server { return sickFor(StatusActive, Unhealthy, 5*time.Second) }},
		{name: "stopped outside Phoenix", server: func() Server { return sickFor(StatusShutoff, HealthUnknown, 20*time.Second) },
			wantOld: true, wantReason: "unhealthy: the server is SHUTOFF, stopped outside Phoenix"},
		{name: "paused", server: func() Server { return sickFor(StatusPaused, HealthUnknown, 20*time.Second) }, wantOld: true, wantReason: "PAUSED"},
		{name: "suspended", server: func() Server { return sickFor(StatusSuspended, HealthUnknown, 20*time.Second) }, wantOld: true, wantReason: "SUSPENDED"},
		{name: "stopped: Nova's word needs no heal_after", server: func() Server { return sickFor(StatusShutoff, HealthUnknown, 0) },
			wantOld: true, wantReason: "SHUTOFF"},
		{name: "stopped by a handover in flight", server: func() Server { return sickFor(StatusShutoff, HealthUnknown, time.Hour) },
			inFlight: []InFlight{{Volume: "v1", From: "x99", To: "c00", Step: "detach"}}},
		{name: "never served: its progress deadline judges it", server: func() Server {
			s := sickFor(StatusActive, Unhealthy, time.Hour)
			s.ReadyAt = time.Time{}
			return s
		}},
		{name: "one sick server is replaced even when max_unhealthy is 0", maxUnhealthy: -2, server: func() Server { return sickFor(StatusActive, Unhealthy, 20*time.Second) },
			wantOld: true, wantReason: "unhealthy"},
		{name: "too many sick at once: none replaced", server: func() Server { return sickFor(StatusActive, Unhealthy, time.Hour) },
			extraSick: 1, wantBlocked: true},
		// A server stopped after it gave its volume away, its group then
		// rolled back onto its image while the rejected image's servers
		// all failed their checks: the group must not wait on it forever.
		{name: "stopped while too many fail their check: replaced", server: func() Server { return sickFor(StatusShutoff, HealthUnknown, time.Hour) },
			extraSick: 2, wantBlocked: true, wantOld: true, wantReason: "SHUTOFF"},
		{name: "stopped beside one failing its check: not blocked", server: func() Server { return sickFor(StatusShutoff, HealthUnknown, time.Hour) },
			extraSick: 1, wantOld: true, wantReason: "SHUTOFF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := tg
			tg.InFlight = tc.inFlight
			switch tc.maxUnhealthy {
			case -2:
				tg.MaxUnhealthy = 0
			case 0:
			default:
				tg.MaxUnhealthy = tc.maxUnhealthy
			}
			servers := append(fleet("cc"), tc.server())
			for i := range tc.extraSick {
				servers[i].Health, servers[i].UnhealthySince = Unhealthy, t0.Add(-time.Hour)
			}
			d := Plan(tg, servers, t0)
			var got Classified
			for _, c := range d.Servers {
				if c.ID == "x99" {
					got = c
				}
			}
			if (got.Kind == KindOld) != tc.wantOld || !strings.Contains(got.Reason, tc.wantReason) {
				t.Errorf("kind %s (%q), want old %v with %q", got.Kind, got.Reason, tc.wantOld, tc.wantReason)
			}
			if d.Status.HealBlocked != tc.wantBlocked {
				t.Errorf("heal blocked %v, want %v (%d unhealthy)", d.Status.HealBlocked, tc.wantBlocked, d.Status.Unhealthy)
			}
			if tc.wantOld && len(d.Creates) != 1 {
				t.Errorf("%d creates, want the replacement first", len(d.Creates))
			}
		})
	}
}

// A stopped server is not booting: a group with one counts it as
// unhealthy, and a one-shot rebuild does not wait for it to boot.
func TestStoppedServerIsNotBooting(t *testing.T) {
	servers := fleet("ccc")
	servers[2].Status = StatusShutoff
	d := Plan(target(3, 1, 0), servers, t0)
	if d.Status.Booting != 0 || d.Status.Unhealthy != 1 || d.Status.Converged {
		t.Errorf("status %+v: want 0 booting, 1 unhealthy, not converged", d.Status)
	}
}
