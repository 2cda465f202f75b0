package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

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
		if s.Status == StatusActive && s.Health == Healthy && s.Phase != PhaseDeleting && s.TaskState != TaskDeleting &&
			(!w.traffic || (s.Traffic == TrafficServing && s.Phase != PhaseDraining)) {
			n++
		}
	}
	return n
}

func (w *world) add(img string, status string, health Health) {
	id := fmt.Sprintf("s%04d", w.next)
	w.next++
	w.servers[id] = &Server{ID: id, Name: id, Status: status, ImageID: img, Revision: "rev", Created: w.now, Health: health, HealthySince: w.now}
	if w.traffic && status == StatusActive {
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
			s.TaskState = TaskDeleting
		}
	}
	for range d.Creates {
		w.add("new", StatusBuild, HealthUnknown)
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
		case s.TaskState == TaskDeleting:
			if w.rng.IntN(3) == 0 {
				delete(w.servers, id)
			}
		case s.Status == StatusBuild:
			if w.rng.IntN(3) == 0 {
				s.Status = StatusActive
				if failRate > 0 && w.rng.IntN(failRate) == 0 {
					s.Status = StatusError
				}
			}
		case s.Status == StatusActive && s.Health != Healthy:
			if w.rng.IntN(2) == 0 {
				s.Health = Healthy
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
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev", MaxFailures: 1000,
			Traffic: traffic, Drain: 30 * time.Second}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		for range count {
			w.add("old", StatusActive, Healthy)
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
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev", MaxFailures: 1000,
			Traffic: traffic, Drain: 30 * time.Second, RebuildInPlace: true}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}, traffic: traffic}
		for range count {
			w.add("old", StatusActive, Healthy)
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
				if s.ImageID == "new" && s.Status != StatusError {
					t.Fatalf("seed %d step %d: server %s rebuilt again on the new image while %s", seed, step, s.ID, s.Status)
				}
				s.Phase, s.DrainThen = PhaseRebuilding, ""
				if rng.IntN(4) == 0 {
					continue // the request was lost after its record
				}
				s.Status, s.ImageID, s.Health, s.Created, s.ReadyAt = StatusRebuild, "new", HealthUnknown, w.now, time.Time{}
				if failRate > 0 && rng.IntN(failRate) == 0 {
					s.Status = StatusError
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
				if s.Status == StatusRebuild && rng.IntN(3) == 0 {
					s.Status = StatusActive
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
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev", Stateful: true, MaxFailures: 1000}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}}
		for i := range count {
			w.add("old", StatusActive, Healthy)
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
				w.servers[h.From.ID].Status = StatusShutoff
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
				case h.Step == "gate" && to.Health == Healthy && rng.IntN(2) == 0:
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
				if s.Status == StatusActive && s.Health == Healthy && s.Phase != PhaseDeleting &&
					s.TaskState != TaskDeleting && len(s.StatefulVolumes) > 0 {
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

// TestFailureBudgetSequences steps rollouts to an image that never boots:
// the failure record goes through the servers (its write sometimes lost,
// and then the failed servers it counts are not deleted), and Phoenix is
// restarted at random (only the record survives). Every world halts with
// its old servers serving, never counts a failed boot twice, and with one
// create at a time halts after exactly max_failures failures.
func TestFailureBudgetSequences(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 13))
		count := 1 + rng.IntN(6)
		surge, unavailable := 1+rng.IntN(2), rng.IntN(2)
		maxFailures := 1 + rng.IntN(4)
		tgt := Target{Count: count, MaxSurge: surge, MaxUnavailable: unavailable, MinReady: 10 * time.Second, ImageID: "new", Revision: "rev",
			MaxFailures: maxFailures, ProgressDeadline: time.Hour, WatchedSince: t0}
		w := &world{rng: rng, now: t0, servers: map[string]*Server{}}
		for range count {
			w.add("old", StatusActive, Healthy)
		}
		var (
			recorded Progress
			halted   string
			failed   = map[string]bool{} // boots that went to ERROR
		)
		for step := 0; step < 2000 && halted == ""; step++ {
			tgt.Progress, tgt.Halted = recorded, halted
			if rng.IntN(10) == 0 {
				tgt.WatchedSince = w.now // a restart: memory gone, the record stays
			}
			d := Plan(tgt, w.list(), w.now)
			lost := rng.IntN(4) == 0
			if d.RecordProgress {
				if lost {
					// The record could not be written (nor a halt, on the
					// same servers): the deletes of the failures it
					// counted wait.
					kept := d.Deletes[:0]
					for _, x := range d.Deletes {
						if x.Server.Kind != KindFailed || slices.Contains(recorded.Counted, x.Server.Boot()) {
							kept = append(kept, x)
						}
					}
					d.Deletes = kept
				} else {
					recorded = d.Progress
				}
			}
			if d.Halt != "" && !lost {
				halted = d.Halt
			}
			w.apply(d)
			if recorded.Failures > len(failed) {
				t.Fatalf("seed %d step %d: %d failures recorded for %d failed boots", seed, step, recorded.Failures, len(failed))
			}
			if total := len(w.servers); total > count+surge {
				t.Fatalf("seed %d step %d: %d servers exceed count %d + surge %d", seed, step, total, count, surge)
			}
			if serving := w.serving(); serving < count-unavailable {
				t.Fatalf("seed %d step %d: %d serving, below count %d - max_unavailable %d", seed, step, serving, count, unavailable)
			}
			w.advance(1) // every boot goes to ERROR
			for _, s := range w.servers {
				if s.Status == StatusError {
					failed[s.Boot()] = true
				}
			}
		}
		if halted == "" {
			t.Fatalf("seed %d: never halted (%d failures recorded of budget %d)", seed, recorded.Failures, maxFailures)
		}
		if recorded.Failures < maxFailures {
			t.Fatalf("seed %d: halted with %d failures recorded, budget %d: %s", seed, recorded.Failures, maxFailures, halted)
		}
		if unavailable == 0 && surge == 1 && len(failed) != maxFailures {
			t.Fatalf("seed %d: one create at a time, %d boots failed for a budget of %d", seed, len(failed), maxFailures)
		}
	}
}
