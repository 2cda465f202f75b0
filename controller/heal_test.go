package controller_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

func TestAutoHealReplacesOneSickServer(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(960), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 10, "{max_surge: 2, max_unavailable: 0, min_ready: 30ms}"), "grace: 30s", "grace: 0s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	before := grouptest.IDsOf(env.Sim, "web")
	sick := before[3]
	if err := env.Sim.SetHealth(sick, sim.HealthFailing); err != nil {
		t.Fatal(err)
	}
	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	ext := mon.Stop()["web"]
	if _, ok := env.Sim.Server(sick); ok {
		t.Fatalf("the sick server %s is still there", sick)
	}
	assertFleet(t, env.Sim, g, gold.ID)
	if res.Deleted != 1 || res.Created != 1 {
		t.Errorf("healing created %d and deleted %d servers, want 1 and 1", res.Created, res.Deleted)
	}
	// Surge-first: the 9 healthy ones kept serving, and the replacement
	// came before the sick one went.
	if ext.MinHealthy < 9 || ext.MaxTotal > 12 {
		t.Errorf("healthy fell to %d, total reached %d", ext.MinHealthy, ext.MaxTotal)
	}
}

func TestAutoHealStopsWhenTooManyAreSick(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(961), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.Replace(grouptest.GroupYAML("web", 10, "{max_surge: 2, max_unavailable: 0, min_ready: 30ms}"), "grace: 30s", "grace: 0s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	before := grouptest.IDsOf(env.Sim, "web")
	for _, id := range before[:6] {
		if err := env.Sim.SetHealth(id, sim.HealthFailing); err != nil {
			t.Fatal(err)
		}
	}
	env.Sim.ResetRequests()
	log := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), log, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last plan.Decision
	_ = r.Run(ctx, controller.Loop{After: func(d plan.Decision, err error) (time.Duration, bool) {
		last = d
		return 50 * time.Millisecond, d.Status.Unhealthy == 6
	}})
	if !last.Status.HealBlocked {
		t.Fatalf("6 of 10 unhealthy: status %+v, want heal blocked", last.Status)
	}
	// A few more rounds change nothing.
	for range 5 {
		if _, err := r.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if grouptest.Creates(env.Sim) != 0 || !slices.Equal(grouptest.IDsOf(env.Sim, "web"), before) {
		t.Errorf("servers were replaced although 6 of 10 were unhealthy")
	}
	blocked := false
	for _, e := range log.Events() {
		blocked = blocked || e.Type == controller.EventHealBlocked
	}
	if !blocked {
		t.Errorf("no heal-blocked alert among the events")
	}
}

// Servers fall sick at random while a rollout is in flight (seeded): the
// bounds hold at every sample — counting a server the test made sick
// after it served as serving, since Phoenix did not cause its loss, until
// the group has eight healthy servers again — and the group converges on
// the new image with every server healthy.
func TestRolloutWithServersFallingSick(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 17))
			env := simtest.Start(t, grouptest.FastSim(int64(1000+seed)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			// A new server that falls sick before it was seen ready counts as a
			// failed boot after the progress deadline; the budget is ample.
			// The sickness is the test's, not the image's: no watch.
			// Probes get room (a 30 ms timeout on a busy machine makes
			// healthy servers look sick, and heal them).
			yaml := strings.NewReplacer("grace: 30s", "grace: 0s", "interval: 30ms", "interval: 200ms", "timeout: 30ms", "timeout: 200ms").
				Replace(grouptest.GroupYAML("web", 8, "{max_surge: 2, max_unavailable: 1, min_ready: 30ms, progress_deadline: 10s, max_failures: 10, watch: 0s}"))
			g := grouptest.ParseGroup(t, yaml)
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})

			var (
				mu                sync.Mutex
				sick              = map[string]bool{}
				seenServing       = map[string]bool{} // sick, and seen with its ready record
				minServing        = 1 << 30
				maxTotal, samples int
			)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { // the monitor
				defer wg.Done()
				// owed holds the servers the test made sick after Phoenix had
				// seen them serve, and that are now going or gone: Phoenix
				// never counted them, so deleting them took nothing from
				// the floor. They count until the group is whole again.
				owed := map[string]bool{}
				for ctx.Err() == nil {
					servers := env.Sim.Servers()
					mu.Lock()
					serving, healthy, present := 0, 0, map[string]bool{}
					for _, s := range servers {
						present[s.ID] = true
						served := sick[s.ID] && s.Metadata[controller.MetaReadyAt] != ""
						switch {
						case s.Healthy:
							healthy++
						case served && !s.Deleting:
							// The test's doing: it counts while it exists.
							serving++
						case served:
							owed[s.ID] = true
						}
					}
					for id := range sick {
						if !present[id] && seenServing[id] {
							owed[id] = true
						}
					}
					for _, s := range servers {
						if sick[s.ID] && s.Metadata[controller.MetaReadyAt] != "" {
							seenServing[s.ID] = true
						}
					}
					if healthy >= 8 {
						clear(owed)
					}
					serving += healthy + len(owed)
					minServing, maxTotal, samples = min(minServing, serving), max(maxTotal, len(servers)), samples+1
					mu.Unlock()
					time.Sleep(time.Millisecond) // the sampling period
				}
			}()
			go func() { // the chaos: a server falls sick now and then
				defer wg.Done()
				for i := 0; i < 3 && ctx.Err() == nil; i++ {
					time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond) // between two failures
					servers := env.Sim.Servers()
					if len(servers) == 0 {
						continue
					}
					victim := servers[rng.IntN(len(servers))]
					if victim.Healthy && env.Sim.SetHealth(victim.ID, sim.HealthFailing) == nil {
						mu.Lock()
						sick[victim.ID] = true
						mu.Unlock()
					}
				}
			}()
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			// Sick servers of the new image are healed too: run until every
			// server is healthy on the new image.
			grouptest.WaitUntil(t, 30*time.Second, "every server healthy on the new image", func() bool {
				res := grouptest.RunOnce(t, env, g, 5*time.Second)
				if !res.Converged {
					return false
				}
				for _, s := range env.Sim.Servers() {
					if !s.Healthy || s.ImageID != patched.ID {
						return false
					}
				}
				return len(env.Sim.Servers()) == 8
			})
			cancel()
			wg.Wait()
			if minServing < 7 || maxTotal > 10 || samples < 50 {
				t.Errorf("serving fell to %d (floor 7), total reached %d (ceiling 10), %d samples", minServing, maxTotal, samples)
			}
		})
	}
}

// A group of one behind a floating IP, with the default max_unhealthy
// (40 % of one rounds down to none): its only server falls sick for good
// after serving. One sick server is always healed, so a new server is
// booted, the address moves to it, and the sick one is deleted — never
// more than two servers at once.
func TestAutoHealGroupOfOneBehindFloatingIP(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(962), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.Replace(poolGroupYAML("web", 1, "{max_surge: 1, max_unavailable: 0, min_ready: 30ms}",
		"{floating_ip: {pool: public, drain: 200ms}}"), "grace: 30s", "grace: 0s", 1))
	if g.Health.MaxUnhealthy.String() != "40%" {
		t.Fatalf("max_unhealthy %s, want the default 40%%", g.Health.MaxUnhealthy)
	}
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	fips := env.Sim.FloatingIPs()
	servers := env.Sim.Servers()
	if len(fips) != 1 || len(servers) != 1 || fips[0].FixedIP != servers[0].Address {
		t.Fatalf("after the build: floating IPs %+v, servers %d; want the one address on the one server", fips, len(servers))
	}
	sick := servers[0]
	if err := env.Sim.SetHealth(sick.ID, sim.HealthFailing); err != nil {
		t.Fatal(err)
	}

	env.Sim.ResetRequests()
	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	runUntil(t, r, 30*time.Second, "the heal", func(d plan.Decision) bool {
		_, there := env.Sim.Server(sick.ID)
		return d.Status.Converged && !there
	})
	ext := mon.Stop()["web"]

	assertFleet(t, env.Sim, g, gold.ID)
	healed := env.Sim.Servers()[0]
	if healed.ID == sick.ID {
		t.Fatalf("the sick server %s is still the group's", sick.ID)
	}
	after := env.Sim.FloatingIPs()
	if len(after) != 1 || after[0].Address != fips[0].Address || after[0].FixedIP != healed.Address {
		t.Errorf("floating IPs after the heal: %+v; want %s moved to the new server %s", after, fips[0].Address, healed.Address)
	}
	// The sick server serves nothing: its delete need not wait for the
	// move, but both happened.
	moved, deleted := requestTime(env.Sim, http.MethodPut, "/floatingips/"+fips[0].ID), requestTime(env.Sim, http.MethodDelete, "/servers/"+sick.ID)
	if moved.IsZero() || deleted.IsZero() {
		t.Errorf("the address moved at %v, the sick server's delete at %v: want both", moved, deleted)
	}
	if ext.MaxTotal > 2 {
		t.Errorf("the group reached %d servers, ceiling 2", ext.MaxTotal)
	}
	// The address answers again, from the new server.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(after[0].Address, "8080") + "/healthz")
	if err != nil {
		t.Fatalf("the floating IP after the heal: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the floating IP's health check answers %d after the heal", resp.StatusCode)
	}
}
