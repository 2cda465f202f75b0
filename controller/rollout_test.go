package controller_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// These tests drive the real reconciler through the real gophercloud
// provisioner against the OpenStack API simulator over HTTP, and judge the
// outcome by what the simulator saw, not by what Phoenix believes.

// assertFleet checks the simulator's own view: exactly count servers, all
// tagged with the group, all on image.
func assertFleet(t testing.TB, s *sim.Sim, g config.Group, image string) {
	t.Helper()
	servers := s.Servers()
	if len(servers) != g.Count {
		names := make([]string, 0, len(servers))
		for _, srv := range servers {
			names = append(names, fmt.Sprintf("%s(%s,%v,deleting=%v)", srv.Name, srv.Status, srv.Tags, srv.Deleting))
		}
		t.Fatalf("simulator holds %d servers, want %d: %s", len(servers), g.Count, strings.Join(names, " "))
	}
	for _, srv := range servers {
		if grouptest.GroupOf(srv) != g.Name {
			t.Errorf("server %s (%s) does not carry the tag of group %s: %v", srv.Name, srv.ID, g.Name, srv.Tags)
		}
		if srv.ImageID != image {
			t.Errorf("server %s runs image %s, want %s", srv.Name, srv.ImageID, image)
		}
		if srv.Status != "ACTIVE" || !srv.Healthy {
			t.Errorf("server %s is %s healthy=%v", srv.Name, srv.Status, srv.Healthy)
		}
	}
}

func TestRebuildKeepsCapacity(t *testing.T) {
	cases := []struct {
		name             string
		rollout          string
		floor, ceiling   int
		wantSurgeCreates bool
	}{
		{name: "surge first", rollout: "{max_surge: 2, max_unavailable: 0, min_ready: 50ms}", floor: 10, ceiling: 12},
		{name: "in place", rollout: "{max_surge: 0, max_unavailable: 2, min_ready: 50ms}", floor: 8, ceiling: 10},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Page size 4: every list of this group crosses pages.
			env := simtest.Start(t, grouptest.FastSim(int64(i+1)), 4)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 10, tc.rollout))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())

			patched := env.Sim.AddImage(sim.Image{Name: "gold"})
			mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
			res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			ext := mon.Stop()["web"]

			if ext.MinHealthy < tc.floor {
				t.Errorf("healthy servers fell to %d during the rollout, below %d", ext.MinHealthy, tc.floor)
			}
			if ext.MaxTotal > tc.ceiling {
				t.Errorf("the group reached %d servers, above %d", ext.MaxTotal, tc.ceiling)
			}
			if ext.Samples < 50 {
				t.Errorf("monitor took only %d samples: the rollout was not watched", ext.Samples)
			}
			assertFleet(t, env.Sim, g, patched.ID)
			if len(res.Pairs) != 10 {
				t.Errorf("replaced %d servers, want 10", len(res.Pairs))
			}
		})
	}
}

// TestRestartAtRandomMomentsConverges kills the reconciler (cancels its
// context, in-flight requests included) at seeded random moments, starts a
// fresh one each time — no memory carried over — and checks that the group
// converges with nothing untagged, extra or lost, and capacity kept across
// the restarts.
func TestRestartAtRandomMomentsConverges(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 7))
			env := simtest.Start(t, grouptest.FastSim(int64(seed)), 3)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			count := 3 + rng.IntN(4)
			surge, unavailable := rng.IntN(3), rng.IntN(2)
			if surge == 0 && unavailable == 0 {
				surge = 1
			}
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("app", count, fmt.Sprintf("{max_surge: %d, max_unavailable: %d, min_ready: 30ms}", surge, unavailable)))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})

			mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
			kills := 1 + rng.IntN(4)
			for k := 0; k < kills; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(700))*time.Millisecond)
				controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())
				cancel()
				// A restart takes longer than the dead controller's last
				// requests take to land: a create it sent is in the list
				// the next one starts from, or was never made.
				grouptest.WaitUntil(t, 10*time.Second, "the killed controller's requests to land", func() bool {
					for _, r := range env.Sim.Requests() {
						if r.Status == 0 {
							return false
						}
					}
					return true
				})
			}
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			ext := mon.Stop()["app"]
			if ext.MinHealthy < count-unavailable {
				t.Errorf("healthy servers fell to %d across restarts, below %d", ext.MinHealthy, count-unavailable)
			}
			if ext.MaxTotal > count+surge {
				t.Errorf("the group reached %d servers across restarts, above %d", ext.MaxTotal, count+surge)
			}
			assertFleet(t, env.Sim, g, patched.ID)
		})
	}
}

// TestLostCreateAnswersLeaveNoExtraServer makes the cloud create a server
// and then answer 500, or never answer at all, and checks that after
// convergence no server is extra or untagged.
func TestLostCreateAnswersLeaveNoExtraServer(t *testing.T) {
	cases := []struct {
		name  string
		fault sim.Fault
	}{
		{"created then 500", sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenFail, Status: 500, Times: 2}},
		{"created then no answer", sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenHang, Times: 1}},
		{"no answer, nothing created", sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.Hang, Times: 1}},
		{"refused with 503", sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.FailWith, Status: 503, Times: 2}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := simtest.Start(t, grouptest.FastSim(int64(100+i)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("api", 4, "{max_surge: 1, min_ready: 30ms}"))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})
			if err := env.Sim.InjectFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			ext := mon.Stop()["api"]
			if ext.MaxTotal > 5 {
				t.Errorf("the group reached %d servers, above count 4 + surge 1", ext.MaxTotal)
			}
			if ext.MinHealthy < 4 {
				t.Errorf("healthy servers fell to %d, below 4", ext.MinHealthy)
			}
			assertFleet(t, env.Sim, g, patched.ID)
			faulted := 0
			for _, r := range env.Sim.Requests() {
				if r.Faulted {
					faulted++
				}
			}
			if faulted != tc.fault.Times {
				t.Errorf("the fault hit %d requests, want %d: the scenario did not happen as designed", faulted, tc.fault.Times)
			}
		})
	}
}

// TestReconcileListsOncePerPage counts the simulator's list requests for
// one reconcile of a converged 10-server group with a page size of 4.
func TestReconcileListsOncePerPage(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(9), 4)
	env.Sim.AddImage(sim.Image{Name: "gold"})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 10, "{max_surge: 10}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())

	env.Sim.ResetRequests()
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	if _, err := r.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	var lists, perServer, other int
	for _, req := range env.Sim.Requests() {
		switch {
		case req.Service == "compute" && req.Method == "GET" && strings.HasSuffix(req.Path, "/servers/detail"):
			lists++
		case req.Service == "compute" && strings.Contains(req.Path, "/servers/"):
			perServer++
		case req.Service == "image" && req.Method == "GET":
		default:
			other++
		}
	}
	// 10 servers at 4 a page: pages of 4, 4 and 2.
	if lists != 3 {
		t.Errorf("%d list requests for 10 servers at 4 a page, want 3", lists)
	}
	if perServer != 0 || other != 0 {
		t.Errorf("reconcile of a converged group sent %d per-server and %d other requests, want none", perServer, other)
	}
}

// TestBrokenImageStopsAndKeepsTheOld publishes an image every server of
// which goes to ERROR: the rebuild must stop on its own, say why, leave
// every old server serving, and remove the failed new ones.
func TestBrokenImageStopsAndKeepsTheOld(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(77), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 4, "{max_surge: 2}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := env.Sim.Servers()
	broken := env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})

	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())[0]
	if res.Converged || !errors.Is(res.Err, controller.ErrStuck) || !strings.Contains(res.Err.Error(), "server is in ERROR") {
		t.Fatalf("result %+v: want stuck on boot failures", res)
	}
	if ctx.Err() != nil {
		t.Fatal("the rebuild ran into its deadline instead of stopping on its own")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(env.Sim.Servers()) != 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the failed servers' deletes complete in the simulator
	}
	ext := mon.Stop()["web"]
	if ext.MinHealthy < 4 {
		t.Errorf("healthy servers fell to %d while the broken image was tried", ext.MinHealthy)
	}
	now := env.Sim.Servers()
	if len(now) != 4 {
		t.Fatalf("%d servers remain, want the 4 old ones", len(now))
	}
	for i, s := range now {
		if s.ID != old[i].ID || s.ImageID == broken.ID {
			t.Errorf("server %s (%s) is not one of the old servers", s.Name, s.ImageID)
		}
	}
	if res.Created > 6 {
		t.Errorf("created %d servers of a broken image: it should stop after a few", res.Created)
	}
}
