package controller_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// sicken makes every server of image that appears answer its health
// checks with 503, until stop is called: a gold image whose application
// never comes up.
func sicken(s *sim.Sim, image string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done := map[string]bool{}
		for ctx.Err() == nil {
			for _, srv := range s.Servers() {
				if srv.ImageID == image && !done[srv.ID] {
					if s.SetHealth(srv.ID, sim.HealthFailing) == nil {
						done[srv.ID] = true
					}
				}
			}
			time.Sleep(time.Millisecond) // polling the simulator for new servers
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

func TestBadImageHaltsAndKeepsTheOld(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(s *sim.Sim, image string) func()
	}{
		{"health never passes", sicken},
		{"every boot goes to ERROR", func(s *sim.Sim, _ string) func() { s.FailNextBoots(1000); return s.ClearBootFaults }},
		{"boots never finish", func(s *sim.Sim, _ string) func() { s.StickNextBoots(1000); return s.ClearBootFaults }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := simtest.Start(t, grouptest.FastSim(int64(900+i)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 4, "{max_surge: 2, min_ready: 30ms, max_failures: 2, progress_deadline: 1s}"))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			old := grouptest.IDsOf(env.Sim, "web")

			bad := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
			stop := tc.break_(env.Sim, bad.ID)
			defer stop()
			env.Sim.ResetRequests()
			res := grouptest.RunOnce(t, env, g, 30*time.Second)
			if res.Converged || !errors.Is(res.Err, controller.ErrHalted) {
				t.Fatalf("want a halted rollout, got converged=%v err=%v", res.Converged, res.Err)
			}
			for _, want := range []string{bad.ID, controller.Revision(g), "phoenix resume --group web"} {
				if !strings.Contains(res.Err.Error(), want) {
					t.Errorf("the halt %q does not name %q", res.Err, want)
				}
			}
			if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, old) {
				t.Errorf("servers after the halt: %d (%v), want exactly the %d old ones", len(got), got, len(old))
			}
			if n := grouptest.Creates(env.Sim); n > 2+2 {
				t.Errorf("%d creates: more than the failure budget 2 plus the surge 2", n)
			}

			// A restart keeps it halted: nothing is created.
			env.Sim.ResetRequests()
			res = grouptest.RunOnce(t, env, g, 10*time.Second)
			if !errors.Is(res.Err, controller.ErrHalted) || grouptest.Creates(env.Sim) != 0 {
				t.Errorf("after a restart: err %v, %d creates; want still halted, none", res.Err, grouptest.Creates(env.Sim))
			}

			// A fixed image rolls out normally.
			stop()
			fixed := env.Sim.AddImage(sim.Image{Name: "gold"})
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			assertFleet(t, env.Sim, g, fixed.ID)
		})
	}
}

func TestResumeLiftsTheHalt(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(950), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1, min_ready: 30ms, max_failures: 1}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.FailNextBoots(1) // one bad boot spends the budget of 1
	if res := grouptest.RunOnce(t, env, g, 30*time.Second); !errors.Is(res.Err, controller.ErrHalted) {
		t.Fatalf("want halted, got %v", res.Err)
	}
	res, err := controller.Resume(context.Background(), env.Cloud.Services(), g)
	if err != nil || res.Halts != 2 {
		t.Fatalf("resume: %+v, %v; want the halt lifted on 2", res, err)
	}
	// The cloud is fine now: the same image rolls out.
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	assertFleet(t, env.Sim, g, patched.ID)
}

// The halt says what is left: old servers that keep serving, or — when a
// group's first build halts — that none is.
func TestHaltSaysWhatKeepsServing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		built    bool
		want     string
		wantNone string
	}{
		{"a rollout halts", true, "2 old servers keep serving", "No old server"},
		{"a first build halts", false, "No old server is left serving", "keep serving"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := simtest.Start(t, grouptest.FastSim(951), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1, min_ready: 30ms, max_failures: 1}"))
			if tc.built {
				grouptest.Rebuild(t, env, g, grouptest.FastOptions())
				env.Sim.AddImage(sim.Image{Name: "gold"})
			}
			env.Sim.FailNextBoots(1000)
			defer env.Sim.ClearBootFaults()
			log := &controller.EventLog{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, log, grouptest.Logger(t), grouptest.FastOptions())
			if !errors.Is(res[0].Err, controller.ErrHalted) {
				t.Fatalf("want halted, got %v", res[0].Err)
			}
			var msg string
			for _, e := range log.Events() {
				if e.Type == controller.EventHalted {
					msg = e.Message
				}
			}
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.wantNone) {
				t.Errorf("halt message %q: want %q, not %q", msg, tc.want, tc.wantNone)
			}
		})
	}
}
