package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

func (e *env) lbClient(t *testing.T) *gophercloud.ServiceClient {
	t.Helper()
	c, err := openstack.NewLoadBalancerV2(e.provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) subnetID(t *testing.T, name string) string {
	t.Helper()
	pages, err := subnets.List(e.network, subnets.ListOpts{Name: name}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l, _ := subnets.ExtractSubnets(pages)
	if len(l) != 1 {
		t.Fatalf("subnets named %s: %d", name, len(l))
	}
	return l[0].ID
}

// octaviaFault is the faultstring of an Octavia error, checking its shape.
func octaviaFault(t *testing.T, err error) string {
	t.Helper()
	var body struct {
		Faultcode   *string `json:"faultcode"`
		Faultstring string  `json:"faultstring"`
		Debuginfo   any     `json:"debuginfo"`
	}
	if jerr := json.Unmarshal([]byte(errorBody(t, err)), &body); jerr != nil || body.Faultcode == nil {
		t.Fatalf("not an Octavia error body: %s", errorBody(t, err))
	}
	return body.Faultstring
}

func waitLBActive(t *testing.T, c *gophercloud.ServiceClient, id string) {
	t.Helper()
	waitFor(t, "the load balancer ACTIVE", func() bool {
		lb, err := loadbalancers.Get(context.Background(), c, id).Extract()
		return err == nil && lb.ProvisioningStatus == "ACTIVE"
	})
}

func TestOctaviaObjects(t *testing.T) {
	e := start(t, sim.Options{LBUpdateTime: sim.Fixed(30 * time.Millisecond)})
	c := e.lbClient(t)
	ctx := context.Background()
	subnet := e.subnetID(t, "private-subnet")

	if _, err := loadbalancers.Create(ctx, c, loadbalancers.CreateOpts{Name: "x", VipSubnetID: "nope"}).Extract(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("a load balancer on a missing subnet: %v", err)
	}
	lb, err := loadbalancers.Create(ctx, c, loadbalancers.CreateOpts{Name: "web", VipSubnetID: subnet, Tags: []string{"t"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if lb.ProvisioningStatus != "PENDING_CREATE" || lb.VipSubnetID != subnet || lb.VipNetworkID != e.netID || lb.VipAddress == "" ||
		lb.Name != "web" || lb.CreatedAt.IsZero() || lb.ProjectID == "" || len(lb.Tags) != 1 {
		t.Fatalf("new load balancer %+v", lb)
	}
	_, err = listeners.Create(ctx, c, listeners.CreateOpts{LoadbalancerID: lb.ID, Protocol: listeners.ProtocolHTTP, ProtocolPort: 80}).Extract()
	if !gophercloud.ResponseCodeIs(err, 409) || octaviaFault(t, err) != "Load Balancer "+lb.ID+" is immutable and cannot be updated." {
		t.Fatalf("a listener while PENDING_CREATE: %v", err)
	}
	waitLBActive(t, c, lb.ID)
	got, _ := loadbalancers.Get(ctx, c, lb.ID).Extract()
	if got.OperatingStatus != "ONLINE" {
		t.Errorf("an ACTIVE load balancer is %s", got.OperatingStatus)
	}

	l, err := listeners.Create(ctx, c, listeners.CreateOpts{LoadbalancerID: lb.ID, Protocol: listeners.ProtocolHTTP, ProtocolPort: 80, Name: "http"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if l.ProtocolPort != 80 || l.Protocol != "HTTP" || len(l.Loadbalancers) != 1 || l.Loadbalancers[0].ID != lb.ID || l.ProvisioningStatus != "PENDING_CREATE" {
		t.Fatalf("listener %+v", l)
	}
	if !strings.HasPrefix(e.sim.ListenerURL(l.ID), "http://127.0.0.1:") || e.sim.ListenerURL("nope") != "" {
		t.Errorf("ListenerURL %q", e.sim.ListenerURL(l.ID))
	}
	waitLBActive(t, c, lb.ID)
	if _, err := listeners.Create(ctx, c, listeners.CreateOpts{LoadbalancerID: lb.ID, Protocol: listeners.ProtocolTCP, ProtocolPort: 80}).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("a second listener on port 80: %v", err)
	}
	p, err := pools.Create(ctx, c, pools.CreateOpts{Name: "web", ListenerID: l.ID, Protocol: pools.ProtocolHTTP, LBMethod: pools.LBMethodRoundRobin}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Loadbalancers) != 1 || p.Loadbalancers[0].ID != lb.ID || len(p.Listeners) != 1 || p.Listeners[0].ID != l.ID || p.LBMethod != "ROUND_ROBIN" {
		t.Fatalf("pool %+v", p)
	}
	waitLBActive(t, c, lb.ID)
	if gl, _ := listeners.Get(ctx, c, l.ID).Extract(); gl.DefaultPoolID != p.ID || gl.ProvisioningStatus != "ACTIVE" || gl.OperatingStatus != "ONLINE" {
		t.Errorf("listener after its pool: %+v", gl)
	}
	hm, err := monitors.Create(ctx, c, monitors.CreateOpts{PoolID: p.ID, Type: monitors.TypeTCP, Delay: 5, Timeout: 3, MaxRetries: 2}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if hm.MaxRetriesDown != 3 || hm.Type != "TCP" || len(hm.Pools) != 1 || hm.Pools[0].ID != p.ID {
		t.Fatalf("monitor %+v", hm)
	}
	waitLBActive(t, c, lb.ID)
	if err := monitors.Delete(ctx, c, hm.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	hm, err = monitors.Create(ctx, c, monitors.CreateOpts{PoolID: p.ID, Type: monitors.TypeHTTP, Delay: 5, Timeout: 3, MaxRetries: 1}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if hm.URLPath != "/" || hm.ExpectedCodes != "200" || hm.HTTPMethod != "GET" || hm.MaxRetriesDown != 3 {
		t.Fatalf("HTTP monitor defaults %+v", hm)
	}
	waitLBActive(t, c, lb.ID)
	if gp, _ := pools.Get(ctx, c, p.ID).Extract(); gp.MonitorID != hm.ID {
		t.Errorf("pool's healthmonitor_id %q", gp.MonitorID)
	}

	// Members. They use port 9, where nothing listens: a port 0.0.0.0
	// serves answers on every 127.x address.
	weight := 300
	_, err = pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Address: "127.1.250.1", ProtocolPort: 9, Weight: &weight}).Extract()
	if !gophercloud.ResponseCodeIs(err, 400) || !strings.Contains(octaviaFault(t, err), "weight") {
		t.Errorf("weight 300: %v", err)
	}
	m1, err := pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Name: "m1", Address: "127.1.250.1", ProtocolPort: 9, Tags: []string{"a", "b"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if m1.Weight != 1 || !m1.AdminStateUp || m1.ProvisioningStatus != "PENDING_CREATE" || m1.OperatingStatus != "OFFLINE" ||
		m1.CreatedAt.IsZero() || m1.ProjectID == "" || len(m1.Tags) != 2 {
		t.Fatalf("new member %+v", m1)
	}
	_, err = pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Address: "127.1.250.2", ProtocolPort: 9}).Extract()
	if !gophercloud.ResponseCodeIs(err, 409) || octaviaFault(t, err) != "Load Balancer "+lb.ID+" is immutable and cannot be updated." {
		t.Errorf("a member while PENDING_UPDATE: %v", err)
	}
	if g, _ := loadbalancers.Get(ctx, c, lb.ID).Extract(); g.ProvisioningStatus != "PENDING_UPDATE" {
		t.Errorf("load balancer during a member create: %s", g.ProvisioningStatus)
	}
	waitLBActive(t, c, lb.ID)
	_, err = pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Address: "127.1.250.1", ProtocolPort: 9}).Extract()
	if !gophercloud.ResponseCodeIs(err, 409) || octaviaFault(t, err) != "Another member on this pool is already using ip 127.1.250.1 on protocol_port 9" {
		t.Errorf("a duplicate member: %v", err)
	}
	m2, err := pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Name: "m2", Address: "127.1.250.2", ProtocolPort: 9, Tags: []string{"a"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	// Nothing listens on port 9 (discard, never served here): the monitor
	// finds nothing.
	waitFor(t, "members ERROR", func() bool {
		ms := e.sim.Members(p.ID)
		return len(ms) == 2 && ms[0].OperatingStatus == "ERROR" && ms[1].OperatingStatus == "ERROR"
	})
	for _, c2 := range []struct {
		opts pools.ListMembersOpts
		tags string
		want []string
	}{
		{pools.ListMembersOpts{}, "", []string{m1.ID, m2.ID}},
		{pools.ListMembersOpts{Name: "m2"}, "", []string{m2.ID}},
		{pools.ListMembersOpts{Address: "127.1.250.1"}, "", []string{m1.ID}},
		{pools.ListMembersOpts{ProtocolPort: 9}, "", []string{m1.ID, m2.ID}},
		{pools.ListMembersOpts{}, "a,b", []string{m1.ID}},
		{pools.ListMembersOpts{}, "a", []string{m1.ID, m2.ID}},
	} {
		q, _ := c2.opts.ToMembersListQuery()
		if c2.tags != "" {
			if q == "" {
				q = "?"
			} else {
				q += "&"
			}
			q += "tags=" + c2.tags
		}
		code, _, body := e.raw(t, "GET", "/load-balancer/v2/lbaas/pools/"+p.ID+"/members"+q, "", nil)
		var list struct {
			Members []struct {
				ID string `json:"id"`
			} `json:"members"`
		}
		_ = json.Unmarshal(body, &list)
		var ids []string
		for _, m := range list.Members {
			ids = append(ids, m.ID)
		}
		if code != 200 || strings.Join(ids, ",") != strings.Join(c2.want, ",") {
			t.Errorf("members%s: %d %v, want %v", q, code, ids, c2.want)
		}
	}
	pages, err := pools.ListMembers(c, p.ID, pools.ListMembersOpts{Name: "m1"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := pools.ExtractMembers(pages); err != nil || len(ms) != 1 || ms[0].ID != m1.ID || ms[0].ProvisioningStatus != "ACTIVE" {
		t.Errorf("ListMembers by name: %+v %v", ms, err)
	}

	zero := 0
	up, err := pools.UpdateMember(ctx, c, p.ID, m1.ID, pools.UpdateMemberOpts{Weight: &zero}).Extract()
	if err != nil || up.Weight != 0 || up.ProvisioningStatus != "PENDING_UPDATE" {
		t.Fatalf("update member: %+v %v", up, err)
	}
	waitLBActive(t, c, lb.ID)
	if err := pools.DeleteMember(ctx, c, p.ID, m1.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	err = pools.DeleteMember(ctx, c, p.ID, m1.ID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, 404) || octaviaFault(t, err) != "Member "+m1.ID+" not found." {
		t.Errorf("deleting a deleted member: %v", err)
	}

	// A batch update replaces the whole set: m2 updated, a new one
	// created, nothing else kept.
	w5 := 5
	err = pools.BatchUpdateMembers(ctx, c, p.ID, []pools.BatchUpdateMemberOpts{
		{Address: "127.1.250.2", ProtocolPort: 9, Weight: &w5},
		{Address: "127.1.250.3", ProtocolPort: 9},
	}).ExtractErr()
	if err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	ms := e.sim.Members(p.ID)
	if len(ms) != 2 || ms[0].ID != m2.ID || ms[0].Weight != 5 || ms[1].Address != "127.1.250.3" || ms[1].ProvisioningStatus != "ACTIVE" {
		t.Fatalf("after a batch update: %+v", ms)
	}
	err = pools.BatchUpdateMembers(ctx, c, p.ID, []pools.BatchUpdateMemberOpts{{Address: "127.1.250.9", ProtocolPort: 9}}).ExtractErr()
	if err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	if ms := e.sim.Members(p.ID); len(ms) != 1 || ms[0].Address != "127.1.250.9" {
		t.Fatalf("after the second batch update: %+v", ms)
	}

	// FailNextMembers: the member ends in ERROR, the load balancer ACTIVE.
	e.sim.FailNextMembers(1)
	bad, err := pools.CreateMember(ctx, c, p.ID, pools.CreateMemberOpts{Address: "127.1.250.4", ProtocolPort: 9}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitLBActive(t, c, lb.ID)
	if m, _ := pools.GetMember(ctx, c, p.ID, bad.ID).Extract(); m.ProvisioningStatus != "ERROR" {
		t.Errorf("a failed member is %s", m.ProvisioningStatus)
	}

	// Lists with filters.
	pages, _ = pools.List(c, pools.ListOpts{LoadbalancerID: lb.ID}).AllPages(ctx)
	if ps, _ := pools.ExtractPools(pages); len(ps) != 1 || ps[0].ID != p.ID || len(ps[0].Members) != 2 {
		t.Errorf("pools of the load balancer: %+v", ps)
	}
	pages, _ = pools.List(c, pools.ListOpts{LoadbalancerID: "other"}).AllPages(ctx)
	if ps, _ := pools.ExtractPools(pages); len(ps) != 0 {
		t.Errorf("pools of another load balancer: %+v", ps)
	}
	pages, _ = loadbalancers.List(c, loadbalancers.ListOpts{Name: "web"}).AllPages(ctx)
	if lbs, _ := loadbalancers.ExtractLoadBalancers(pages); len(lbs) != 1 || len(lbs[0].Listeners) != 1 || len(lbs[0].Pools) != 1 {
		t.Errorf("load balancers named web: %+v", lbs)
	}

	// Delete without cascade is refused while it has children; with
	// cascade everything goes, the listener's socket too.
	if err := loadbalancers.Delete(ctx, c, lb.ID, nil).ExtractErr(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("delete with children: %v", err)
	}
	url := e.sim.ListenerURL(l.ID)
	if err := loadbalancers.Delete(ctx, c, lb.ID, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the load balancer gone", func() bool {
		_, err := loadbalancers.Get(ctx, c, lb.ID).Extract()
		return gophercloud.ResponseCodeIs(err, 404)
	})
	if _, err := pools.Get(ctx, c, p.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("the pool outlived its load balancer: %v", err)
	}
	if _, err := monitors.Get(ctx, c, hm.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("the monitor outlived its load balancer: %v", err)
	}
	if e.sim.ListenerURL(l.ID) != "" {
		t.Error("the listener outlived its load balancer")
	}
	if code, _ := get(t, url); code != 0 {
		t.Errorf("the listener's socket still answers %d", code)
	}
}

func TestOctaviaFaults(t *testing.T) {
	e := start(t, sim.Options{})
	c := e.lbClient(t)
	info, err := e.sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.InjectFault(sim.Fault{Service: "load-balancer", Path: `^/v2/lbaas/pools/[^/]+/members`, Action: sim.FailWith, Status: 409, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = pools.CreateMember(context.Background(), c, info.PoolID, pools.CreateMemberOpts{Address: "127.1.250.1", ProtocolPort: 80}).Extract()
	if !gophercloud.ResponseCodeIs(err, 409) || octaviaFault(t, err) != "Load Balancer "+info.ID+" is immutable and cannot be updated." {
		t.Errorf("an injected 409: %v", err)
	}
	reqs := e.sim.Requests()
	if last := reqs[len(reqs)-1]; last.Service != "load-balancer" || !last.Faulted {
		t.Errorf("request log: %+v", last)
	}
	if _, err := pools.CreateMember(context.Background(), c, info.PoolID, pools.CreateMemberOpts{Address: "127.1.250.1", ProtocolPort: 80}).Extract(); err != nil {
		t.Errorf("after the fault: %v", err)
	}
}

// TestListenerForwarding sends real requests through a listener while
// members are drained and fail their health checks.
func TestListenerForwarding(t *testing.T) {
	e := start(t, fastOpts)
	c := e.lbClient(t)
	ctx := context.Background()
	apps := e.healthy(t, 2)
	a, b := apps[0], apps[1]
	info, err := e.sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool", Monitor: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, info.URL); code != http.StatusServiceUnavailable {
		t.Errorf("no members: %d, want 503", code)
	}
	mon := e.sim.MonitorPool(info.PoolID, time.Millisecond)
	var ids []string
	for _, s := range []sim.Server{a, b} {
		waitLBActive(t, c, info.ID)
		m, err := pools.CreateMember(ctx, c, info.PoolID, pools.CreateMemberOpts{Address: s.Address, ProtocolPort: e.sim.HealthPort()}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	waitFor(t, "members ONLINE", func() bool {
		ms := e.sim.Members(info.PoolID)
		return len(ms) == 2 && ms[0].OperatingStatus == "ONLINE" && ms[1].OperatingStatus == "ONLINE" && ms[1].ProvisioningStatus == "ACTIVE"
	})
	seen := map[string]int{}
	for range 20 {
		code, who := get(t, info.URL)
		if code != 200 {
			t.Fatalf("through the listener: %d", code)
		}
		seen[who]++
	}
	if seen[a.ID] != 10 || seen[b.ID] != 10 {
		t.Errorf("round robin: %v", seen)
	}

	// Weight 0 drains a.
	zero := 0
	if _, err := pools.UpdateMember(ctx, c, info.PoolID, ids[0], pools.UpdateMemberOpts{Weight: &zero}).Extract(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if code, who := get(t, info.URL); code != 200 || who != b.ID {
			t.Fatalf("after draining a: %d from %q", code, who)
		}
	}
	// b fails its health checks: OFFLINE, and nothing serves.
	if err := e.sim.SetHealth(b.ID, sim.HealthFailing); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b OFFLINE", func() bool { return e.sim.Members(info.PoolID)[1].OperatingStatus == "OFFLINE" })
	if code, _ := get(t, info.URL); code != http.StatusServiceUnavailable {
		t.Errorf("with no member serving: %d", code)
	}
	// The sampler runs on its own: on a busy machine it may not have
	// looked since b went OFFLINE.
	waitFor(t, "the pool monitor to see no member serving", func() bool { return mon.Seen().MinServing == 0 })
	ext := mon.Stop()
	if ext.MinServing != 0 || ext.MaxServing != 2 || ext.Samples < 2 {
		t.Errorf("pool monitor %+v", ext)
	}
	// b recovers; a foreign member added directly serves too.
	_ = e.sim.SetHealth(b.ID, sim.HealthUp)
	waitFor(t, "b ONLINE", func() bool { return e.sim.Members(info.PoolID)[1].OperatingStatus == "ONLINE" })
	if code, who := get(t, info.URL); code != 200 || who != b.ID {
		t.Errorf("after b recovered: %d from %q", code, who)
	}
	f, err := e.sim.AddMember(info.PoolID, sim.Member{Name: "foreign", Address: "127.1.250.7", ProtocolPort: 8080, Tags: []string{"x"}})
	if err != nil || f.ProvisioningStatus != "ACTIVE" || f.Weight != 1 || !f.AdminStateUp {
		t.Fatalf("AddMember: %+v %v", f, err)
	}
	if _, err := e.sim.AddMember(info.PoolID, sim.Member{Address: "127.1.250.7", ProtocolPort: 8080}); err == nil {
		t.Error("AddMember took a duplicate")
	}
}

func TestCloseStopsOctaviaAndFloatingIPs(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	e := start(t, fastOpts)
	app := e.healthy(t, 1)[0]
	info, err := e.sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool", Monitor: true, MonitorPath: "/healthz"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.AddMember(info.PoolID, sim.Member{Address: app.Address, ProtocolPort: e.sim.HealthPort()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the member ONLINE", func() bool { return e.sim.Members(info.PoolID)[0].OperatingStatus == "ONLINE" })
	fip, err := e.sim.AddFloatingIP("x")
	if err != nil {
		t.Fatal(err)
	}
	// Keep-alive connections to the listener, through it to the
	// application, and to the floating IP.
	resp, err := http.Get(info.URL)
	if err != nil || resp.Header.Get("X-Sim-Server") != app.ID {
		t.Fatalf("through the listener: %v", err)
	}
	resp.Body.Close()
	if resp, err = http.Get("http://" + fip.Address + ":" + e.port() + "/"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mon := e.sim.MonitorPool(info.PoolID, time.Millisecond)

	e.sim.Close()
	noSimGoroutinesLeft(t)
	_ = mon.Stop()
	if code, _ := get(t, info.URL); code != 0 {
		t.Error("a listener outlived Close")
	}
	if code, _ := get(t, "http://"+fip.Address+":"+e.port()+"/"); code != 0 {
		t.Error("a floating IP outlived Close")
	}
	http.DefaultClient.CloseIdleConnections()
	e.provider.HTTPClient.CloseIdleConnections()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
