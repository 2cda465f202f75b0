package controller_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// These tests send real HTTP requests through the simulator's load
// balancer and floating IPs while Phoenix rebuilds the servers behind
// them, and count what a user of the application would have seen.

func poolGroupYAML(name string, count int, rollout, traffic string) string {
	return grouptest.GroupYAML(name, count, rollout) + "    traffic: " + traffic + "\n"
}

// hit is one request of the load: which server answered, or what failed.
type hit struct {
	at     time.Time
	server string
	err    error
}

// load sends requests to url from a few clients until stop is called, and
// returns every answer.
type load struct {
	mu     sync.Mutex
	hits   []hit
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(url string, clients int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				h := hit{at: time.Now()}
				resp, err := client.Get(url + "/?work=100ms")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					h.server = resp.Header.Get("X-Sim-Server")
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d from %q", resp.StatusCode, h.server)
					}
				}
				if ctx.Err() != nil {
					return // the test stopped the load: not an answer
				}
				h.err = err
				l.mu.Lock()
				l.hits = append(l.hits, h)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) stop() []hit {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hit(nil), l.hits...)
}

// checkLoad asserts that no request failed and that, from the moment the
// rebuild converged, every answer came from one of the new servers.
func checkLoad(t *testing.T, hits []hit, converged time.Time, newServers map[string]bool) {
	t.Helper()
	var failed []string
	after, fromOld := 0, 0
	for _, h := range hits {
		if h.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", h.at.Format("15:04:05.000"), h.err))
			continue
		}
		if h.at.After(converged) {
			after++
			if !newServers[h.server] {
				fromOld++
			}
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed during the rebuild, first: %s", len(failed), len(hits), strings.Join(failed[:min(5, len(failed))], "; "))
	}
	if len(hits) < 50 {
		t.Errorf("only %d requests were sent: the load did not run", len(hits))
	}
	if after < 20 {
		t.Errorf("only %d requests after convergence: the last part of the run was not watched", after)
	}
	if fromOld > 0 {
		t.Errorf("%d of %d requests after convergence were answered by a server that is not new", fromOld, after)
	}
}

func serverIDs(s *sim.Sim) map[string]bool {
	out := map[string]bool{}
	for _, srv := range s.Servers() {
		out[srv.ID] = true
	}
	return out
}

// settle runs the load a little longer after convergence so that the
// last part of the run is seen.
func settle(t *testing.T, l *load, n int) {
	t.Helper()
	start := l.count()
	grouptest.WaitUntil(t, 10*time.Second, "the load to go on after convergence", func() bool { return l.count() >= start+n })
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hits)
}

func TestRebuildBehindPoolDropsNoRequest(t *testing.T) {
	cases := []struct {
		name   string
		faults []sim.Fault
	}{
		{name: "calm"},
		{name: "30% of member changes answered 409", faults: []sim.Fault{
			{Service: "load-balancer", Method: "POST", Path: `^/v2/lbaas/pools/[^/]+/members`, Action: sim.FailWith, Status: 409, Fraction: 0.3},
			{Service: "load-balancer", Method: "PUT", Path: `^/v2/lbaas/pools/[^/]+/members`, Action: sim.FailWith, Status: 409, Fraction: 0.3},
			{Service: "load-balancer", Method: "DELETE", Path: `^/v2/lbaas/pools/[^/]+/members`, Action: sim.FailWith, Status: 409, Fraction: 0.3},
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := grouptest.FastSim(int64(200 + i))
			opts.LBUpdateTime = sim.Fixed(20 * time.Millisecond)
			env := simtest.Start(t, opts, 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "web-lb", PoolName: "web-pool", Monitor: true, MonitorPath: "/healthz"})
			if err != nil {
				t.Fatal(err)
			}
			g := grouptest.ParseGroup(t, poolGroupYAML("web", 8, "{max_surge: 2, max_unavailable: 0, min_ready: 50ms}",
				"{octavia: {load_balancer: web-lb, pool: web-pool, protocol_port: 8080, drain: 1s}}"))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 8)

			for _, f := range tc.faults {
				if err := env.Sim.InjectFault(f); err != nil {
					t.Fatal(err)
				}
			}
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})
			l := startLoad(lb.URL, 4)
			mon := env.Sim.MonitorPool(lb.PoolID, time.Millisecond)
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			converged := time.Now()
			settle(t, l, 40)
			hits := l.stop()
			ext := mon.Stop()

			assertFleet(t, env.Sim, g, patched.ID)
			checkLoad(t, hits, converged, serverIDs(env.Sim))
			if ext.MinServing < 8 {
				t.Errorf("the pool fell to %d serving members during the rebuild, below count 8 - max_unavailable 0", ext.MinServing)
			}
			if ext.Samples < 50 {
				t.Errorf("the pool monitor took only %d samples", ext.Samples)
			}
			grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 8)
			if len(tc.faults) > 0 && !faulted(env.Sim, "load-balancer") {
				t.Errorf("no member change met a 409: the fault did not run")
			}
		})
	}
}

func faulted(s *sim.Sim, service string) bool {
	for _, r := range s.Requests() {
		if r.Service == service && r.Faulted {
			return true
		}
	}
	return false
}

// TestDrainResumesAfterRestart kills the controller just after it started
// draining a server and starts a fresh one a while later: the member must
// go when the drain recorded on the server ends, not a full drain after
// the restart.
func TestDrainResumesAfterRestart(t *testing.T) {
	const drain = 1500 * time.Millisecond
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 11))
			env := simtest.Start(t, grouptest.FastSim(int64(300+seed)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"})
			if err != nil {
				t.Fatal(err)
			}
			g := grouptest.ParseGroup(t, poolGroupYAML("web", 3, "{max_surge: 1, max_unavailable: 0, min_ready: 30ms}",
				fmt.Sprintf("{octavia: {pool: pool, protocol_port: 8080, drain: %s}}", drain)))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			env.Sim.AddImage(sim.Image{Name: "gold"})

			// Run until a drain is recorded, then kill the controller.
			ctx, kill := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())
			}()
			var victim sim.Server
			grouptest.WaitUntil(t, 20*time.Second, "a drain to be recorded", func() bool {
				for _, s := range env.Sim.Servers() {
					if s.Metadata[controller.MetaPhase] == plan.PhaseDraining {
						victim = s
						return true
					}
				}
				return false
			})
			kill()
			<-done
			start, err := time.Parse(time.RFC3339Nano, victim.Metadata[controller.MetaPhaseAt])
			if err != nil {
				t.Fatal(err)
			}
			member := grouptest.MemberOf(env.Sim, lb.PoolID, victim.Address)
			if member == "" {
				t.Fatalf("the draining server %s has no member", victim.Name)
			}
			// The controller is down for a while; then a fresh one runs.
			down := 500*time.Millisecond + time.Duration(rng.IntN(500))*time.Millisecond
			time.Sleep(down)
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())

			removed := requestTime(env.Sim, "DELETE", "/members/"+member)
			if removed.IsZero() {
				t.Fatalf("member %s of the drained server was never deleted", member)
			}
			if took := removed.Sub(start); took < drain || took >= drain+down {
				t.Errorf("member removed %v after the recorded drain start: want the rest of the %v drain, not a new one after %v down", took, drain, down)
			}
			grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
		})
	}
}

// requestTime is when the first successful request of method whose path
// ends in suffix arrived.
func requestTime(s *sim.Sim, method, suffix string) time.Time {
	for _, r := range s.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, suffix) && r.Status >= 200 && r.Status < 300 {
			return r.Time
		}
	}
	return time.Time{}
}

func TestRebuildBehindFloatingIPDropsNoRequest(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(400), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, poolGroupYAML("web", 1, "{max_surge: 1, max_unavailable: 0, min_ready: 50ms}",
		"{floating_ip: {pool: public, drain: 500ms}}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	fips := env.Sim.FloatingIPs()
	if len(fips) != 1 {
		t.Fatalf("want one floating IP allocated for the group, found %d", len(fips))
	}
	first := env.Sim.Servers()[0]
	if fips[0].FixedIP != first.Address {
		t.Fatalf("the floating IP points at %q, not at the group's server %s", fips[0].FixedIP, first.Address)
	}

	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	l := startLoad("http://"+net.JoinHostPort(fips[0].Address, "8080"), 4)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	converged := time.Now()
	settle(t, l, 30)
	hits := l.stop()

	assertFleet(t, env.Sim, g, patched.ID)
	now := env.Sim.Servers()[0]
	checkLoad(t, hits, converged, map[string]bool{now.ID: true})
	after := env.Sim.FloatingIPs()
	if len(after) != 1 || after[0].Address != fips[0].Address || after[0].FixedIP != now.Address {
		t.Errorf("floating IPs after the rebuild: %+v; want %s on the new server %s", after, fips[0].Address, now.Address)
	}
	served := map[string]bool{}
	for _, h := range hits {
		served[h.server] = true
	}
	if !served[first.ID] || !served[now.ID] {
		t.Errorf("answers came from %v: want both the old server %s and the new %s", served, first.ID, now.ID)
	}
}

// A pool shared with another application: its members stay exactly as
// they were, through a rebuild and through the repair of stale members.
func TestForeignMembersAreNeverTouched(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(500), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "shared", PoolName: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := env.Sim.AddMember(lb.PoolID, sim.Member{Name: "billing-1", Address: "127.0.0.2", ProtocolPort: 8080, Weight: 3, AdminStateUp: true, Tags: []string{"billing"}})
	if err != nil {
		t.Fatal(err)
	}
	// A member of the group whose server is gone, as a crash would leave.
	stale, err := env.Sim.AddMember(lb.PoolID, sim.Member{Name: "web-gone", Address: "127.0.0.3", ProtocolPort: 8080, Weight: 1, AdminStateUp: true, Tags: []string{controller.GroupTag("web")}})
	if err != nil {
		t.Fatal(err)
	}
	g := grouptest.ParseGroup(t, poolGroupYAML("web", 2, "{max_surge: 1, min_ready: 30ms}", "{octavia: {pool: shared, protocol_port: 8080, drain: 0s}}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	env.Sim.AddImage(sim.Image{Name: "gold"})
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())

	var gotForeign *sim.Member
	for _, m := range env.Sim.Members(lb.PoolID) {
		switch m.ID {
		case foreign.ID:
			gotForeign = &m
		case stale.ID:
			t.Errorf("the stale member of the group (server gone) is still in the pool")
		}
	}
	if gotForeign == nil || !reflect.DeepEqual(*gotForeign, foreign) {
		t.Errorf("the other application's member changed: before %+v, after %+v", foreign, gotForeign)
	}
	for _, r := range env.Sim.Requests() {
		if r.Method != "GET" && strings.Contains(r.Path, foreign.ID) {
			t.Errorf("Phoenix sent %s %s to the other application's member", r.Method, r.Path)
		}
		if r.Method == "PUT" && strings.HasSuffix(r.Path, "/members") {
			t.Errorf("Phoenix replaced the pool's whole member set (%s %s)", r.Method, r.Path)
		}
	}
}

// A pool that does not exist stops the group before any server is touched,
// with an error that names the field.
func TestUnknownPoolTouchesNoServer(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(600), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	plain := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, "{max_surge: 1}"))
	grouptest.Rebuild(t, env, plain, grouptest.FastOptions())
	env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()

	g := grouptest.ParseGroup(t, poolGroupYAML("web", 2, "{max_surge: 1}", "{octavia: {pool: no-such-pool, protocol_port: 8080}}"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())[0]
	if res.Converged || !errors.Is(res.Err, controller.ErrStuck) {
		t.Fatalf("want a stuck group, got converged=%v err=%v", res.Converged, res.Err)
	}
	for _, want := range []string{"traffic.octavia.pool", "no-such-pool"} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("error %q does not name %q", res.Err, want)
		}
	}
	for _, r := range env.Sim.Requests() {
		if r.Service == "compute" && r.Method != "GET" {
			t.Errorf("a server was touched: %s %s", r.Method, r.Path)
		}
	}
}

// What a crash or a hand leaves behind is repaired by the next reconcile:
// a serving server that is no member is added again, and a member that
// went to ERROR is replaced.
func TestMembersAreRepaired(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(700), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"})
	if err != nil {
		t.Fatal(err)
	}
	g := grouptest.ParseGroup(t, poolGroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}", "{octavia: {pool: pool, protocol_port: 8080, drain: 0s}}"))
	// The first member create ends in ERROR.
	env.Sim.FailNextMembers(1)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
	replaced := false
	for _, r := range env.Sim.Requests() {
		replaced = replaced || (r.Method == "DELETE" && strings.Contains(r.Path, "/members/") && r.Status == http.StatusNoContent)
	}
	if !replaced {
		t.Errorf("no member was deleted: the member in ERROR was not replaced")
	}

	// A member removed behind Phoenix's back.
	pool, err := env.Cloud.ResolvePool(context.Background(), "", "pool")
	if err != nil {
		t.Fatal(err)
	}
	gone := env.Sim.Members(lb.PoolID)[0]
	if err := env.Cloud.DeleteMember(context.Background(), pool, gone.ID); err != nil {
		t.Fatal(err)
	}
	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
	if res.Created != 0 || res.Deleted != 0 {
		t.Errorf("repairing a member created %d and deleted %d servers", res.Created, res.Deleted)
	}
	if grouptest.MemberOf(env.Sim, lb.PoolID, gone.Address) == "" {
		t.Errorf("the server at %s was not added back", gone.Address)
	}
}
