package openstack_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

func poolEnv(t *testing.T, opts sim.Options, monitor bool) (*simtest.Env, provisioner.Pool) {
	t.Helper()
	env := simtest.Start(t, opts, 0)
	if _, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool", Monitor: monitor}); err != nil {
		t.Fatal(err)
	}
	pool, err := env.Cloud.ResolvePool(ctx(t), "lb", "pool")
	if err != nil {
		t.Fatal(err)
	}
	if pool.HasMonitor != monitor || pool.LoadBalancerID == "" {
		t.Fatalf("resolved pool %+v", pool)
	}
	return env, pool
}

func TestResolvePool(t *testing.T) {
	env, pool := poolEnv(t, sim.Options{}, true)
	byID, err := env.Cloud.ResolvePool(ctx(t), "", pool.ID)
	if err != nil || byID != pool {
		t.Errorf("by ID: %+v, %v", byID, err)
	}
	for _, tc := range []struct{ lb, pool string }{{"", "nope"}, {"no-such-lb", "pool"}} {
		_, err := env.Cloud.ResolvePool(ctx(t), tc.lb, tc.pool)
		if !errors.Is(err, provisioner.ErrNotFound) {
			t.Errorf("ResolvePool(%q, %q) = %v, want not found", tc.lb, tc.pool, err)
		}
	}
}

// Every member change meets a busy load balancer some of the time: the
// provisioner waits and goes on, and each change is made exactly once.
func TestMemberChangesWaitOutBusyLoadBalancer(t *testing.T) {
	env, pool := poolEnv(t, sim.Options{LBUpdateTime: sim.Fixed(30 * time.Millisecond), Seed: 3}, false)
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		if err := env.Sim.InjectFault(sim.Fault{Service: "load-balancer", Method: method, Path: `/members`, Action: sim.FailWith, Status: 409, Fraction: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, addr := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"} {
		m, err := env.Cloud.CreateMember(ctx(t), pool, provisioner.MemberSpec{Name: addr, Address: addr, ProtocolPort: 80, Weight: 1, Tags: []string{"phoenix-group:x"}})
		if err != nil {
			t.Fatalf("create member %s: %v", addr, err)
		}
		ids = append(ids, m.ID)
	}
	for _, id := range ids {
		if err := env.Cloud.SetMemberWeight(ctx(t), pool, id, 0); err != nil {
			t.Fatalf("drain %s: %v", id, err)
		}
	}
	_, members, err := env.Cloud.PoolMembers(ctx(t), pool.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("%d members, want 3: a create was made twice or lost", len(members))
	}
	for _, m := range members {
		if m.Weight != 0 || m.ProvisioningStatus != "ACTIVE" || len(m.Tags) != 1 {
			t.Errorf("member %s: weight %d, %s, tags %v", m.Address, m.Weight, m.ProvisioningStatus, m.Tags)
		}
	}
	for _, id := range ids {
		if err := env.Cloud.DeleteMember(ctx(t), pool, id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
		// A member already gone is removed.
		if err := env.Cloud.DeleteMember(ctx(t), pool, id); err != nil {
			t.Errorf("deleting member %s again: %v, want nil (404 is done)", id, err)
		}
	}
	if _, members, _ = env.Cloud.PoolMembers(ctx(t), pool.ID); len(members) != 0 {
		t.Errorf("%d members left", len(members))
	}
	conflicts := 0
	for _, r := range env.Sim.Requests() {
		if r.Service == "load-balancer" && r.Status == 409 {
			conflicts++
		}
	}
	if conflicts == 0 {
		t.Errorf("no 409 was answered: the test did not test the wait")
	}
}

// A create whose answer was lost leaves a member; the next create of the
// same address returns it instead of failing or adding a second one.
func TestCreateMemberIsIdempotent(t *testing.T) {
	env, pool := poolEnv(t, sim.Options{}, false)
	if err := env.Sim.InjectFault(sim.Fault{Service: "load-balancer", Method: "POST", Path: `/members$`, Action: sim.CommitThenFail, Status: 500, Times: 1}); err != nil {
		t.Fatal(err)
	}
	spec := provisioner.MemberSpec{Name: "a", Address: "127.0.0.21", ProtocolPort: 8080, Weight: 2}
	if _, err := env.Cloud.CreateMember(ctx(t), pool, spec); err == nil {
		t.Fatal("the first create answered 500 but the provisioner saw no error")
	}
	m, err := env.Cloud.CreateMember(ctx(t), pool, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := env.Sim.Members(pool.ID); len(got) != 1 || got[0].ID != m.ID || got[0].Weight != 2 {
		t.Errorf("members %+v, want the one made by the lost create", got)
	}
}

// A load balancer in ERROR takes no change; the error says so.
func TestMemberChangeOnBrokenLoadBalancer(t *testing.T) {
	env, pool := poolEnv(t, sim.Options{}, false)
	env.Sim.FailNextMembers(1)
	m, err := env.Cloud.CreateMember(ctx(t), pool, provisioner.MemberSpec{Name: "a", Address: "127.0.0.31", ProtocolPort: 80, Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, members, err := env.Cloud.PoolMembers(ctx(t), pool.ID)
	if err != nil || len(members) != 1 || members[0].ID != m.ID || members[0].ProvisioningStatus != "ERROR" {
		t.Fatalf("members %+v, %v: want one in ERROR", members, err)
	}
	if members[0].Serving(pool) {
		t.Error("a member in ERROR counts as serving")
	}
}

func TestFloatingIPs(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	env.Sim.AddImage(sim.Image{Name: "fip"})
	s1 := bootActive(t, env, "a")
	s2 := bootActive(t, env, "b")

	fip, err := env.Cloud.FloatingIPByDescription(ctx(t), "public", "phoenix:group:web")
	if err != nil {
		t.Fatal(err)
	}
	again, err := env.Cloud.FloatingIPByDescription(ctx(t), "public", "phoenix:group:web")
	if err != nil || again.ID != fip.ID {
		t.Fatalf("second lookup %+v, %v: want the same floating IP, not a new one", again, err)
	}
	byAddr, err := env.Cloud.FloatingIPByAddress(ctx(t), fip.Address)
	if err != nil || byAddr.ID != fip.ID {
		t.Fatalf("by address: %+v, %v", byAddr, err)
	}
	if _, err := env.Cloud.FloatingIPByAddress(ctx(t), "203.0.113.99"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("unknown address: %v, want not found", err)
	}
	for _, s := range []provisioner.Server{s1, s2} {
		port, err := env.Cloud.ServerPort(ctx(t), s.ID, "private")
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Cloud.AssociateFloatingIP(ctx(t), fip.ID, port.ID); err != nil {
			t.Fatal(err)
		}
		got, _ := env.Cloud.FloatingIPByAddress(ctx(t), fip.Address)
		if got.PortID != port.ID || len(port.FixedIPs) == 0 || got.FixedIP != port.FixedIPs[0] {
			t.Errorf("after moving to %s: %+v (port %+v)", s.Name, got, port)
		}
	}
	if _, err := env.Cloud.ServerPort(ctx(t), "no-such-server", "private"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("port of an unknown server: %v", err)
	}
}

func bootActive(t *testing.T, env *simtest.Env, name string) provisioner.Server {
	t.Helper()
	net, err := env.Cloud.ResolveNetwork(ctx(t), "private")
	if err != nil {
		t.Fatal(err)
	}
	img, err := env.Cloud.ResolveImage(ctx(t), provisioner.ImageSelector{Name: "fip"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Cloud.CreateServer(ctx(t), provisioner.ServerSpec{Name: name, ImageID: img.ID, FlavorID: "1", NetworkIDs: []string{net}, Tags: []string{"fip"}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := env.Cloud.ListServers(ctx(t), "fip")
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range list {
			if got.ID == s.ID && got.Status == provisioner.StatusActive {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s never became ACTIVE", name)
		}
		time.Sleep(10 * time.Millisecond) // polling the simulated Nova
	}
}

// A cloud without Octavia serves groups without a pool, and a pool call
// says the service is missing rather than failing on an empty address.
func TestNoOctaviaIsNamedOnlyWhenUsed(t *testing.T) {
	env := simtest.Start(t, sim.Options{NoLoadBalancerService: true, BootTime: sim.Fixed(0)}, 0)
	if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
		t.Fatalf("a cloud without Octavia cannot list servers: %v", err)
	}
	_, err := env.Cloud.ResolvePool(ctx(t), "", "pool")
	if err == nil || !strings.Contains(err.Error(), "no load-balancer (Octavia) endpoint in the catalog") {
		t.Errorf("ResolvePool on a cloud without Octavia: %v, want the missing service named", err)
	}
	// Its services say so up front, the rest are there.
	s := env.Cloud.Services()
	err = provisioner.Missing(s.LoadBalancer)
	if !errors.Is(err, provisioner.ErrUnavailable) || !strings.Contains(err.Error(), "Octavia (load balancer) is not available on this cloud: no load-balancer endpoint in the catalog") {
		t.Errorf("Missing(LoadBalancer) on a cloud without Octavia: %v, want the missing service named", err)
	}
	for name, c := range map[string]any{"Servers": s.Servers, "Images": s.Images, "FloatingIPs": s.FloatingIPs, "Volumes": s.Volumes} {
		if err := provisioner.Missing(c); err != nil {
			t.Errorf("Missing(%s) on a cloud without Octavia: %v", name, err)
		}
	}
}
