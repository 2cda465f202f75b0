package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fleet builds servers for plan tables: spec letters say what each is.
//
//	o = old image, healthy      O = old image, health unknown
//	c = current, available      b = current, BUILD
//	w = current, ACTIVE, healthy but not yet min_ready
//	u = current, ACTIVE, unhealthy
//	e = current, ERROR          d = current, being deleted (task state)
//	r = current, phase deleting recorded but no delete in progress
//	n = current, created moments ago but missing from the list
func fleet(spec string) []Server {
	var out []Server
	for i, ch := range spec {
		s := Server{
			ID:           fmt.Sprintf("%c%02d", ch, i),
			Name:         fmt.Sprintf("srv-%c%02d", ch, i),
			Status:       StatusActive,
			ImageID:      "new",
			Revision:     "rev",
			Created:      t0.Add(-time.Duration(100-i) * time.Minute),
			Health:       Healthy,
			HealthySince: t0.Add(-time.Hour),
		}
		switch ch {
		case 'o':
			s.ImageID = "old"
		case 'O':
			s.ImageID = "old"
			s.Health = HealthUnknown
		case 'c':
		case 'b':
			s.Status = StatusBuild
			s.Health = HealthUnknown
		case 'w':
			s.HealthySince = t0.Add(-5 * time.Second)
		case 'u':
			s.Health = Unhealthy
		case 'e':
			s.Status = StatusError
			s.Fault = "No valid host was found."
		case 'd':
			s.TaskState = TaskDeleting
		case 'r':
			s.Phase = PhaseDeleting
		case 'n':
			s.Status, s.Health, s.Unlisted = StatusBuild, HealthUnknown, true
		default:
			panic("unknown fleet letter " + string(ch))
		}
		out = append(out, s)
	}
	return out
}

func target(count, surge, unavailable int) Target {
	return Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 30 * time.Second, ImageID: "new", Revision: "rev", MaxFailures: 1000}
}

func deletedLetters(d Decision) string {
	var b strings.Builder
	for _, x := range d.Deletes {
		b.WriteByte(x.Server.ID[0])
	}
	return b.String()
}

func TestPlanTable(t *testing.T) {
	cases := []struct {
		name       string
		target     Target
		fleet      string
		creates    int
		deletes    string // first letter of each deleted server, in order
		converged  bool
		available  int
		resumeOnly bool
	}{
		{name: "empty group boots everything at once", target: target(3, 1, 0), fleet: "", creates: 3},
		{name: "converged group does nothing", target: target(3, 1, 0), fleet: "ccc", converged: true, available: 3},
		{name: "surge-first: new servers before any old one goes", target: target(10, 2, 0), fleet: "oooooooooo", creates: 2},
		{name: "booting replacements hold old servers", target: target(10, 2, 0), fleet: "oooooooooobb"},
		{name: "available replacements release as many old", target: target(10, 2, 0), fleet: "oooooooooocc", deletes: "oo", available: 2},
		{name: "min_ready not yet passed holds old servers", target: target(4, 1, 0), fleet: "oooow"},
		{name: "deleting servers count against surge", target: target(4, 1, 0), fleet: "oooc" + "d", available: 1},
		{name: "pipelined: a freed slot is refilled at once", target: target(4, 2, 0), fleet: "oocc", creates: 2, deletes: "", available: 2},
		{name: "in-place: max_unavailable with no surge deletes first", target: target(10, 0, 2), fleet: "oooooooooo", deletes: "oo"},
		{name: "in-place: creates into freed room", target: target(10, 0, 2), fleet: "oooooooo", creates: 2},
		{name: "in-place: booting servers use the unavailable budget", target: target(10, 0, 2), fleet: "oooooooobb"},
		{name: "failed servers are removed freely", target: target(3, 1, 0), fleet: "ccce", deletes: "e", available: 3},
		{name: "failed current server is replaced at once within surge", target: target(3, 1, 0), fleet: "cce", deletes: "e", creates: 1, available: 2},
		{name: "unknown-health old servers are not counted on: none goes below the floor", target: target(3, 1, 0), fleet: "OOOc", deletes: "", available: 1},
		{name: "unknown-health old servers go freely above the floor", target: target(3, 3, 0), fleet: "OOOccc", deletes: "OOO", available: 3},
		{name: "health-unknown old server goes before a healthy one", target: target(3, 1, 0), fleet: "oOoc", deletes: "O", available: 1},
		{name: "surplus current: booting duplicate goes first", target: target(3, 1, 0), fleet: "cccb", deletes: "b", available: 3},
		{name: "surplus current: serving duplicate goes when capacity allows", target: target(3, 1, 0), fleet: "cccc", deletes: "c", available: 4},
		{name: "recorded delete without a delete in progress is resumed", target: target(3, 1, 0), fleet: "cccr", deletes: "r", available: 3, resumeOnly: true},
		{name: "quota-free: nothing deleted before replacements exist", target: target(2, 1, 0), fleet: "oo", creates: 1},
		{name: "unhealthy new server holds its slot", target: target(3, 1, 0), fleet: "oocu", available: 1},
		{name: "percent-like big surge creates all at once", target: target(4, 4, 0), fleet: "oooo", creates: 4},
		{name: "a server missing from the list still counts", target: target(3, 1, 0), fleet: "ooo" + "n", available: 0},
		{name: "a missing server is never deleted as surplus", target: target(3, 1, 0), fleet: "cccn", available: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(tc.target, fleet(tc.fleet), t0)
			if len(d.Creates) != tc.creates {
				t.Errorf("creates = %d, want %d", len(d.Creates), tc.creates)
			}
			if got := deletedLetters(d); got != tc.deletes {
				t.Errorf("deletes = %q, want %q", got, tc.deletes)
			}
			if d.Status.Converged != tc.converged {
				t.Errorf("converged = %v, want %v (status %+v)", d.Status.Converged, tc.converged, d.Status)
			}
			if d.Status.Available != tc.available {
				t.Errorf("available = %d, want %d", d.Status.Available, tc.available)
			}
			for _, x := range d.Deletes {
				if x.Resume != tc.resumeOnly {
					t.Errorf("delete of %s: resume = %v, want %v", x.Server.ID, x.Resume, tc.resumeOnly)
				}
			}
		})
	}
}

// A drain resumes from the start recorded on the server: a restart
// neither cuts it short nor starts it over.
func TestPlanDrainResumesFromRecordedStart(t *testing.T) {
	tgt := target(2, 1, 0)
	tgt.Traffic, tgt.Drain = true, 30*time.Second
	servers := fleet("cc")
	for i := range servers {
		servers[i].Traffic = TrafficServing
	}
	draining := fleet("o")[0]
	draining.ID, draining.Phase, draining.Traffic = "x99", PhaseDraining, TrafficDrained
	cases := []struct {
		name       string
		started    time.Duration // before now
		traffic    TrafficState
		wantDelete bool
		wantDrain  bool
		wantWait   time.Duration
	}{
		{"ten seconds in", 10 * time.Second, TrafficDrained, false, false, 20 * time.Second},
		{"weight change lost in a crash", 10 * time.Second, TrafficServing, false, true, 20 * time.Second},
		{"drain over", 30 * time.Second, TrafficDrained, true, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := draining
			x.DrainStart, x.Traffic = t0.Add(-tc.started), tc.traffic
			d := Plan(tgt, append(append([]Server(nil), servers...), x), t0)
			if got := len(d.Deletes) == 1 && d.Deletes[0].Server.ID == x.ID; got != tc.wantDelete {
				t.Errorf("deleted: %v, want %v (%+v)", got, tc.wantDelete, d.Deletes)
			}
			if got := len(d.Drains) == 1 && d.Drains[0].Resume && d.Drains[0].Until.Equal(x.DrainStart.Add(30*time.Second)); got != tc.wantDrain {
				t.Errorf("drain again keeping the recorded end: %v, want %v (%+v)", got, tc.wantDrain, d.Drains)
			}
			if tc.wantWait > 0 && d.RequeueAfter != tc.wantWait {
				t.Errorf("requeue after %v, want the rest of the drain %v", d.RequeueAfter, tc.wantWait)
			}
			if d.Status.Draining != 1 || d.Status.Converged {
				t.Errorf("status %+v", d.Status)
			}
		})
	}
}

// strategy rebuild behind a pool: a server is rebuilt once its drain is
// over and it is out of the traffic — not while the pool still sends it
// requests because the weight change never landed (refused, or lost in a
// crash between the record and the request): then it is drained again.
func TestPlanRebuildWaitsForItsDrainToTake(t *testing.T) {
	tgt := target(2, 0, 1)
	tgt.Traffic, tgt.Drain, tgt.RebuildInPlace = true, 30*time.Second, true
	for _, tc := range []struct {
		traffic     TrafficState
		wantReimage bool
	}{
		{TrafficDrained, true},
		{TrafficServing, false},
		{TrafficPending, false},
	} {
		t.Run(tc.traffic.String(), func(t *testing.T) {
			servers := fleet("co")
			servers[0].Traffic = TrafficServing
			x := &servers[1]
			x.Phase, x.DrainThen, x.DrainStart, x.Traffic, x.Revision = PhaseDraining, DrainThenRebuild, t0.Add(-time.Minute), tc.traffic, "rev"
			d := Plan(tgt, servers, t0)
			if got := len(d.Reimages) == 1 && d.Reimages[0].Server.ID == x.ID; got != tc.wantReimage {
				t.Errorf("reimaged: %v, want %v (%+v)", got, tc.wantReimage, d.Reimages)
			}
			if drained := len(d.Drains) == 1 && d.Drains[0].Resume && d.Drains[0].Server.ID == x.ID; drained == tc.wantReimage {
				t.Errorf("drained again: %v, want %v (%+v)", drained, !tc.wantReimage, d.Drains)
			}
		})
	}
}

// A halted rollout removes the new servers that never served, and keeps
// everything that serves or served: old ones, and current ones.
func TestPlanHalted(t *testing.T) {
	cases := []struct {
		name    string
		target  func(Target) Target
		fleet   string
		tweak   func([]Server)
		deletes string // first letter of each deleted server
		adds    int
	}{
		{name: "a booting new server goes; old, serving and served ones stay", fleet: "oocbu",
			tweak: func(s []Server) { s[4].ReadyAt = t0.Add(-time.Hour) }, deletes: "b"},
		{name: "a new server never ready goes", fleet: "oou", deletes: "u"},
		{name: "a failed server goes", fleet: "ooe", deletes: "e"},
		{name: "a server rebuilt in place stays", target: func(t Target) Target { t.RebuildInPlace = true; return t }, fleet: "oob",
			tweak: func(s []Server) { s[2].Phase = PhaseRebuilding }},
		{name: "the new home of a volume in flight stays", target: func(t Target) Target {
			t.Stateful, t.InFlight = true, []InFlight{{Volume: "v", From: "o00", To: "b02", Step: "attach"}}
			return t
		}, fleet: "oob"},
		{name: "what serves stays in the traffic", target: func(t Target) Target { t.Traffic, t.Drain = true, time.Second; return t }, fleet: "oc",
			tweak: func(s []Server) { s[0].Traffic = TrafficServing }, adds: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tgt := target(4, 2, 0)
			if tc.target != nil {
				tgt = tc.target(tgt)
			}
			tgt.Halted = "2 new servers went to ERROR"
			servers := fleet(tc.fleet)
			if tc.tweak != nil {
				tc.tweak(servers)
			}
			d := Plan(tgt, servers, t0)
			if got := deletedLetters(d); got != tc.deletes {
				t.Errorf("deleted %q, want %q", got, tc.deletes)
			}
			if len(d.Creates)+len(d.Drains)+len(d.Reimages)+len(d.Handovers) != 0 || len(d.AddTraffic) != tc.adds || !d.Status.Halted || d.Status.Converged {
				t.Errorf("halted plan: %d creates, %d drains, %d reimages, %d added to traffic, status %+v",
					len(d.Creates), len(d.Drains), len(d.Reimages), len(d.AddTraffic), d.Status)
			}
		})
	}
}
