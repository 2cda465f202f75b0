package controller

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/healthcheck"
	"github.com/phoenix-ops/phoenix/provisioner"
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
			Status:       provisioner.StatusActive,
			ImageID:      "new",
			Revision:     "rev",
			Created:      t0.Add(-time.Duration(100-i) * time.Minute),
			Health:       healthcheck.Healthy,
			HealthySince: t0.Add(-time.Hour),
		}
		switch ch {
		case 'o':
			s.ImageID = "old"
		case 'O':
			s.ImageID = "old"
			s.Health = healthcheck.Unknown
		case 'c':
		case 'b':
			s.Status = provisioner.StatusBuild
			s.Health = healthcheck.Unknown
		case 'w':
			s.HealthySince = t0.Add(-5 * time.Second)
		case 'u':
			s.Health = healthcheck.Unhealthy
		case 'e':
			s.Status = provisioner.StatusError
			s.Fault = "No valid host was found."
		case 'd':
			s.TaskState = provisioner.TaskDeleting
		case 'r':
			s.Phase = PhaseDeleting
		case 'n':
			s.Status, s.Health, s.Unlisted = provisioner.StatusBuild, healthcheck.Unknown, true
		default:
			panic("unknown fleet letter " + string(ch))
		}
		out = append(out, s)
	}
	return out
}

func target(count, surge, unavailable int) Target {
	return Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 30 * time.Second, ImageID: "new", Revision: "rev"}
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

func TestPlanRequeueAtMinReady(t *testing.T) {
	d := Plan(target(4, 1, 0), fleet("ooow"), t0)
	// w became healthy 5s before t0 and min_ready is 30s.
	if d.RequeueAfter != 25*time.Second {
		t.Fatalf("RequeueAfter = %v, want 25s", d.RequeueAfter)
	}
}

func TestDriftReasons(t *testing.T) {
	cut := t0.Add(-time.Minute)
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
	}
	tgt := Target{ImageID: "new", Revision: "rev", RebuildBefore: cut, RebuildReason: "CVE-2026-0001"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Drift(tgt, tc.server)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Fatalf("Drift = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPickZonesSpreads(t *testing.T) {
	current := []Classified{{Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az1"}}, {Server: Server{Zone: "az2"}}}
	got := pickZones([]string{"az1", "az2", "az3"}, current, 4)
	want := []string{"az3", "az2", "az3", "az1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("zones = %v, want %v", got, want)
	}
}

// world is a toy cloud for stepping the planner: it applies decisions and
// then advances servers at random, the way a real cloud would.
type world struct {
	rng     *rand.Rand
	now     time.Time
	servers map[string]*Server
	next    int
	// healthy is the truth the plan cannot see directly: a server serves
	// once ACTIVE and healthy, and stops the moment its delete is decided.
	// With traffic it serves only while the load balancer sends it
	// requests: a serving member, not draining.
	traffic bool
	// inflight are the handovers of a stateful world.
	inflight []InFlight
}

func (w *world) list() []Server {
	out := make([]Server, 0, len(w.servers))
	for i := 0; i < w.next; i++ {
		if s, ok := w.servers[fmt.Sprintf("s%04d", i)]; ok {
			out = append(out, *s)
		}
	}
	return out
}

func (w *world) serving() int {
	n := 0
	for _, s := range w.servers {
		if s.Status == provisioner.StatusActive && s.Health == healthcheck.Healthy && s.Phase != PhaseDeleting && s.TaskState != provisioner.TaskDeleting &&
			(!w.traffic || (s.Traffic == TrafficServing && s.Phase != PhaseDraining)) {
			n++
		}
	}
	return n
}

func (w *world) add(img string, status string, health healthcheck.State) {
	id := fmt.Sprintf("s%04d", w.next)
	w.next++
	w.servers[id] = &Server{ID: id, Name: id, Status: status, ImageID: img, Revision: "rev", Created: w.now, Health: health, HealthySince: w.now}
	if w.traffic && status == provisioner.StatusActive {
		w.servers[id].Traffic = TrafficServing
	}
}

func (w *world) apply(d Decision) {
	for _, x := range d.Deletes {
		s := w.servers[x.Server.ID]
		if s.Phase == PhaseDraining && w.now.Before(s.DrainStart.Add(30*time.Second)) {
			panic(fmt.Sprintf("server %s deleted %v into a 30s drain", s.ID, w.now.Sub(s.DrainStart)))
		}
		s.Phase = PhaseDeleting
		// Sometimes the delete request itself is lost (a crash between
		// recording the phase and asking), leaving only the record.
		if w.rng.IntN(4) != 0 {
			s.TaskState = provisioner.TaskDeleting
		}
	}
	for range d.Creates {
		w.add("new", provisioner.StatusBuild, healthcheck.Unknown)
	}
	for _, x := range d.Drains {
		s := w.servers[x.Server.ID]
		if !x.Resume {
			s.Phase, s.DrainStart, s.DrainThen = PhaseDraining, w.now, x.Then
		}
		// Sometimes the weight change is lost after the record was
		// written: the next plan must drain it again.
		if w.rng.IntN(4) != 0 {
			s.Traffic = TrafficDrained
		}
	}
	for _, c := range d.AddTraffic {
		w.servers[c.ID].Traffic = TrafficPending
	}
}

func (w *world) advance(failRate int) {
	w.now = w.now.Add(time.Duration(w.rng.IntN(20)) * time.Second)
	for id, s := range w.servers {
		switch {
		case s.TaskState == provisioner.TaskDeleting:
			if w.rng.IntN(3) == 0 {
				delete(w.servers, id)
			}
		case s.Status == provisioner.StatusBuild:
			if w.rng.IntN(3) == 0 {
				s.Status = provisioner.StatusActive
				if failRate > 0 && w.rng.IntN(failRate) == 0 {
					s.Status = provisioner.StatusError
				}
			}
		case s.Status == provisioner.StatusActive && s.Health != healthcheck.Healthy:
			if w.rng.IntN(2) == 0 {
				s.Health = healthcheck.Healthy
				s.HealthySince = w.now
			}
		case s.Traffic == TrafficPending:
			if w.rng.IntN(2) == 0 {
				s.Traffic = TrafficServing
			}
		}
	}
}

// TestPlanSequencesKeepInvariants steps the planner through random worlds
// and checks, after every step, the bound and availability invariants of
// ARCHITECTURE.md, and that every world converges.
func TestPlanSequencesKeepInvariants(t *testing.T) {
	for seed := range uint64(600) {
		// Odd seeds move the traffic: members are added, drained for 30s
		// and removed, and only serving members count.
		traffic := seed%2 == 1
		rng := rand.New(rand.NewPCG(seed, 42))
		count := 1 + rng.IntN(12)
		surge, unavailable := rng.IntN(4), rng.IntN(3)
		if surge == 0 && unavailable == 0 {
			surge = 1
		}
		unavailable = min(unavailable, count)
		failRate := 0
		if seed%3 == 0 {
			failRate = 5 // one boot in five goes to ERROR
		}
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev",
			Traffic: traffic, Drain: 30 * time.Second}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		for range count {
			w.add("old", provisioner.StatusActive, healthcheck.Healthy)
		}
		converged := false
		for step := 0; step < 2000 && !converged; step++ {
			d := Plan(tgt, w.list(), w.now)
			converged = d.Status.Converged
			w.apply(d)
			if total := len(w.servers); total > count+surge {
				t.Fatalf("seed %d step %d: %d servers exceed count %d + surge %d", seed, step, total, count, surge)
			}
			if serving := w.serving(); serving < count-unavailable {
				t.Fatalf("seed %d step %d: %d serving servers, below count %d - max_unavailable %d", seed, step, serving, count, unavailable)
			}
			w.advance(failRate)
		}
		if !converged {
			t.Fatalf("seed %d (count %d surge %d unavailable %d): did not converge: %+v", seed, count, surge, unavailable, Plan(tgt, w.list(), w.now).Status)
		}
		for _, s := range w.servers {
			if s.ImageID != "new" {
				t.Fatalf("seed %d: server %s still on %s after convergence", seed, s.ID, s.ImageID)
			}
			if traffic && s.Traffic != TrafficServing {
				t.Fatalf("seed %d: server %s converged with traffic %s", seed, s.ID, s.Traffic)
			}
		}
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

// With traffic, a ready server counts only once it serves, an old server
// is drained rather than deleted, and a floating IP goes to one server.
func TestPlanTraffic(t *testing.T) {
	withTraffic := func(spec string, states ...TrafficState) []Server {
		out := fleet(spec)
		for i := range out {
			out[i].Traffic = states[i]
		}
		return out
	}
	pool := target(2, 1, 0)
	pool.Traffic, pool.Drain = true, 5*time.Second
	fip := target(1, 1, 0)
	fip.Traffic, fip.SingleTraffic, fip.Drain = true, true, 5*time.Second

	t.Run("ready but not yet a member: added, nothing drained", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c02" || len(d.Drains)+len(d.Deletes) != 0 {
			t.Errorf("add %v drains %v deletes %v", d.AddTraffic, d.Drains, d.Deletes)
		}
	})
	t.Run("member pending: nothing to do but look again soon", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficPending), t0)
		if len(d.AddTraffic)+len(d.Drains)+len(d.Deletes) != 0 || d.RequeueAfter != trafficPoll {
			t.Errorf("add %v drains %v deletes %v requeue %v", d.AddTraffic, d.Drains, d.Deletes, d.RequeueAfter)
		}
	})
	t.Run("serving: one old server drained, not deleted", func(t *testing.T) {
		d := Plan(pool, withTraffic("ooc", TrafficServing, TrafficServing, TrafficServing), t0)
		if len(d.Drains) != 1 || len(d.Deletes) != 0 || !d.Drains[0].Until.Equal(t0.Add(5*time.Second)) {
			t.Errorf("drains %+v deletes %v", d.Drains, d.Deletes)
		}
	})
	t.Run("member in ERROR or at weight 0 is put back", func(t *testing.T) {
		d := Plan(pool, withTraffic("cc", TrafficBroken, TrafficDrained), t0)
		if len(d.AddTraffic) != 2 {
			t.Errorf("add %v", d.AddTraffic)
		}
	})
	t.Run("old server in ERROR is deleted without a drain", func(t *testing.T) {
		d := Plan(pool, withTraffic("cce", TrafficServing, TrafficServing, TrafficServing), t0)
		if deletedLetters(d) != "e" || len(d.Drains) != 0 {
			t.Errorf("deletes %q drains %v", deletedLetters(d), d.Drains)
		}
	})
	t.Run("floating ip moves to the new server, then the old drains", func(t *testing.T) {
		d := Plan(fip, withTraffic("oc", TrafficServing, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c01" || len(d.Drains) != 0 {
			t.Errorf("add %v drains %v", d.AddTraffic, d.Drains)
		}
		d = Plan(fip, withTraffic("oc", TrafficNone, TrafficServing), t0)
		if len(d.AddTraffic) != 0 || len(d.Drains) != 1 || d.Drains[0].Server.ID != "o00" {
			t.Errorf("add %v drains %v", d.AddTraffic, d.Drains)
		}
	})
	t.Run("floating ip goes to one server of several, the one that stays", func(t *testing.T) {
		d := Plan(fip, withTraffic("cc", TrafficNone, TrafficNone), t0)
		if len(d.AddTraffic) != 1 || d.AddTraffic[0].ID != "c00" || len(d.Drains) != 1 || d.Drains[0].Server.ID != "c01" {
			t.Errorf("add %v drains %v: want the surplus c01 drained and the address on c00", d.AddTraffic, d.Drains)
		}
	})
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
		servers = append(servers, Server{ID: fmt.Sprintf("srv-%03d", i), Status: provisioner.StatusActive, ImageID: "new", Revision: "rev",
			Created: built, Health: healthcheck.Healthy, HealthySince: built})
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

// A halted rollout removes the new servers that never served, and keeps
// everything that serves or served: old ones, and current ones.
func TestPlanHalted(t *testing.T) {
	tgt := target(4, 2, 0)
	tgt.Halted = "2 new servers went to ERROR"
	servers := fleet("oocbu")
	servers[4].WasReady = true // served, unhealthy now
	d := Plan(tgt, servers, t0)
	if got := deletedLetters(d); got != "b" {
		t.Errorf("deleted %q, want only the booting new server b", got)
	}
	if len(d.Creates)+len(d.Drains)+len(d.AddTraffic) != 0 || !d.Status.Halted || d.Status.Converged {
		t.Errorf("halted plan: %d creates, %d drains, status %+v", len(d.Creates), len(d.Drains), d.Status)
	}
}

// TestPlanRebuildInPlaceSequences steps strategy rebuild through random
// worlds: Nova reimages servers in place (sometimes the request is lost
// after its record, sometimes the rebuild goes to ERROR). After every
// step no more servers exist than count + surge and no fewer serve than
// count − max_unavailable; every world converges on the new image on the
// very servers it started with (a failed rebuild is rebuilt again).
func TestPlanRebuildInPlaceSequences(t *testing.T) {
	for seed := range uint64(400) {
		traffic := seed%2 == 1
		rng := rand.New(rand.NewPCG(seed, 7))
		count := 1 + rng.IntN(10)
		surge, unavailable := rng.IntN(3), 1+rng.IntN(2)
		unavailable = min(unavailable, count)
		failRate := 0
		if seed%5 == 0 {
			failRate = 6
		}
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev",
			Traffic: traffic, Drain: 30 * time.Second, RebuildInPlace: true}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		for range count {
			w.add("old", provisioner.StatusActive, healthcheck.Healthy)
		}
		first := map[string]bool{}
		for id := range w.servers {
			first[id] = true
		}
		converged := false
		for step := 0; step < 3000 && !converged; step++ {
			d := Plan(tgt, w.list(), w.now)
			converged = d.Status.Converged
			w.apply(d)
			for _, x := range d.Reimages {
				s := w.servers[x.Server.ID]
				if s.ImageID == "new" && s.Status != provisioner.StatusError {
					t.Fatalf("seed %d step %d: server %s rebuilt again on the new image while %s", seed, step, s.ID, s.Status)
				}
				s.Phase, s.DrainThen = PhaseRebuilding, ""
				if rng.IntN(4) == 0 {
					continue // the request was lost after its record
				}
				s.Status, s.ImageID, s.Health, s.Created, s.WasReady = "REBUILD", "new", healthcheck.Unknown, w.now, false
				if failRate > 0 && rng.IntN(failRate) == 0 {
					s.Status = provisioner.StatusError
				}
			}
			if total := len(w.servers); total > count+surge {
				t.Fatalf("seed %d step %d: %d servers exceed count %d + surge %d", seed, step, total, count, surge)
			}
			if serving := w.serving(); serving < count-unavailable {
				t.Fatalf("seed %d step %d: %d serving servers, below count %d - max_unavailable %d", seed, step, serving, count, unavailable)
			}
			w.advance(0)
			for _, s := range w.servers {
				if s.Status == "REBUILD" && rng.IntN(3) == 0 {
					s.Status = provisioner.StatusActive
				}
			}
		}
		if !converged {
			t.Fatalf("seed %d (count %d surge %d unavailable %d traffic %v): did not converge: %+v", seed, count, surge, unavailable, traffic, Plan(tgt, w.list(), w.now).Status)
		}
		for id, s := range w.servers {
			if s.ImageID != "new" {
				t.Fatalf("seed %d: server %s still on %s after convergence", seed, id, s.ImageID)
			}
			if !first[id] {
				t.Fatalf("seed %d: server %s was created: a rebuild in place keeps the servers, a failed one is rebuilt again", seed, id)
			}
		}
	}
}

// TestPlanStatefulSequences steps stateful groups through random worlds:
// every old server holds a data volume that must move to a new server.
// A handover stops the old server, moves the volume, and ends when the
// new one passes its check. After every step: no more than count + surge
// servers, no fewer than count − max_unavailable serving (ACTIVE,
// healthy, holding a volume, not stopped), every volume on at most one
// server; every world converges with each volume on a new server.
func TestPlanStatefulSequences(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		count := 1 + rng.IntN(6)
		surge, unavailable := 1+rng.IntN(2), 1+rng.IntN(2)
		unavailable = min(unavailable, count)
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev", Stateful: true}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}}
		for i := range count {
			w.add("old", provisioner.StatusActive, healthcheck.Healthy)
			w.servers[fmt.Sprintf("s%04d", i)].StatefulVolumes = []string{fmt.Sprintf("v%d", i)}
		}
		converged := false
		for step := 0; step < 3000 && !converged; step++ {
			tgt.InFlight = slices.Clone(w.inflight)
			d := Plan(tgt, w.list(), w.now)
			converged = d.Status.Converged
			w.apply(d)
			for _, h := range d.Handovers {
				w.inflight = append(w.inflight, InFlight{Volume: h.Volume, From: h.From.ID, To: h.To.ID, Step: "stop"})
				w.servers[h.From.ID].Status = "SHUTOFF"
			}
			// Handovers advance: the volume moves, then the new server
			// passes its check with it.
			var left []InFlight
			for _, h := range w.inflight {
				from, to := w.servers[h.From], w.servers[h.To]
				switch {
				case h.Step == "stop" && rng.IntN(2) == 0:
					from.StatefulVolumes = slices.DeleteFunc(slices.Clone(from.StatefulVolumes), func(v string) bool { return v == h.Volume })
					to.StatefulVolumes = append(slices.Clone(to.StatefulVolumes), h.Volume)
					h.Step = "gate"
				case h.Step == "gate" && to.Health == healthcheck.Healthy && rng.IntN(2) == 0:
					continue // done
				}
				left = append(left, h)
			}
			w.inflight = left
			holders := map[string]int{}
			serving := 0
			for _, s := range w.servers {
				for _, v := range s.StatefulVolumes {
					holders[v]++
				}
				if s.Status == provisioner.StatusActive && s.Health == healthcheck.Healthy && s.Phase != PhaseDeleting &&
					s.TaskState != provisioner.TaskDeleting && len(s.StatefulVolumes) > 0 {
					serving++
				}
			}
			for v, n := range holders {
				if n > 1 {
					t.Fatalf("seed %d step %d: volume %s on %d servers", seed, step, v, n)
				}
			}
			if total := len(w.servers); total > count+surge {
				t.Fatalf("seed %d step %d: %d servers exceed count %d + surge %d", seed, step, total, count, surge)
			}
			if serving < count-unavailable {
				t.Fatalf("seed %d step %d: %d serving servers, below count %d - max_unavailable %d", seed, step, serving, count, unavailable)
			}
			w.advance(0)
		}
		if !converged {
			t.Fatalf("seed %d (count %d surge %d unavailable %d): did not converge: %+v", seed, count, surge, unavailable, Plan(tgt, w.list(), w.now).Status)
		}
		vols := 0
		for id, s := range w.servers {
			if s.ImageID != "new" || len(s.StatefulVolumes) != 1 {
				t.Fatalf("seed %d: server %s on %s holds %v after convergence", seed, id, s.ImageID, s.StatefulVolumes)
			}
			vols++
		}
		if vols != count {
			t.Fatalf("seed %d: %d volumes placed, want %d", seed, vols, count)
		}
	}
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
		health     healthcheck.State
		age        time.Duration // since its create
		watched    time.Duration // since this controller first listed it
		wantFailed bool
	}{
		{"unknown health, watched all along, past the deadline", provisioner.StatusActive, healthcheck.Unknown, 11 * time.Minute, 11 * time.Minute, true},
		{"unhealthy, watched all along, past the deadline", provisioner.StatusActive, healthcheck.Unhealthy, 11 * time.Minute, 11 * time.Minute, true},
		{"stuck in BUILD, watched all along, past the deadline", provisioner.StatusBuild, healthcheck.Unknown, 11 * time.Minute, 11 * time.Minute, true},
		{"past the deadline, watched a minute (the daemon just started)", provisioner.StatusActive, healthcheck.Unknown, 11 * time.Minute, time.Minute, false},
		{"unhealthy past the deadline, watched a minute", provisioner.StatusActive, healthcheck.Unhealthy, 11 * time.Minute, time.Minute, false},
		{"stuck in BUILD past the deadline, watched a minute", provisioner.StatusBuild, healthcheck.Unknown, 11 * time.Minute, time.Minute, false},
		{"within the deadline", provisioner.StatusActive, healthcheck.Unhealthy, time.Minute, time.Minute, false},
		{"healthy past the deadline", provisioner.StatusActive, healthcheck.Healthy, 11 * time.Minute, 11 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Server{ID: "s1", Name: "srv-1", Status: tc.status, ImageID: "new", Revision: "rev",
				Created: now.Add(-tc.age), WatchedSince: now.Add(-tc.watched), Health: tc.health, HealthySince: now.Add(-time.Hour)}
			c := classify(tg, s, now)
			if got := c.Kind == KindFailed; got != tc.wantFailed {
				t.Errorf("failed = %v (%s: %s), want %v", got, c.Kind, c.Reason, tc.wantFailed)
			}
		})
	}
}
