package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// responderPort is where examples/devcloud/responder.py answers every
// fake server's health check.
const responderPort = 18080

// watchedGroup is one group the devcloud monitor watches, with the bounds
// its configuration sets.
type watchedGroup struct {
	Name         string // the group's name
	Count, Surge int    // never more than Count+Surge servers of the group
	// Unavailable: never fewer than Count-Unavailable serving, once the
	// group first reached that many.
	Unavailable int
	// HealthPort and HealthPath are the health endpoint the monitor asks
	// itself; the devcloud responder's port (the default) is read from the
	// responder's own list of sick addresses, any other port is probed.
	HealthPort int
	HealthPath string
	Network    string // whose address is checked; "" = phoenix-net
	// Pool is an Octavia pool ID: serving then also means a member of it
	// with weight > 0.
	Pool string
	// Foreign are members of Pool that are not Phoenix's: they must stay
	// exactly as they are.
	Foreign []pools.Member
	// FloatingIP is a floating IP ID; "" finds the one Phoenix allocates
	// (its description). Once attached, it must always point at an ACTIVE
	// server of the group.
	FloatingIP string
}

// devcloudMonitor samples the development cloud itself — Nova, Octavia,
// Neutron and the health endpoints, not what Phoenix reports — while a
// scenario runs, and records each breach of the invariants that must hold
// at every moment: the bound (servers ≤ count + surge), availability
// (serving ≥ the floor once first reached), foreign pool members
// untouched, no orphan (a server of the group without its tag), and the
// floating IP always on an ACTIVE server of its group once attached.
//
// A sample reads over several APIs, so the floor is judged breached only
// when two samples in a row show it: a server drained between the member
// read and the server list would otherwise be a false alarm.
type devcloudMonitor struct {
	// compute lists the whole project, by a plain gophercloud list of its
	// own: Phoenix's client lists one tag at a time, and orphans carry
	// none.
	compute, lbc, nc *gophercloud.ServiceClient

	mu      sync.Mutex
	groups  []*watchState
	excused map[string]bool
	samples int
	listed  int // server lists begun: every fifth is of the whole project
	// failed counts the samples a read failed (skipped), firstErr says
	// why the first did: a monitor that never samples checks nothing.
	failed   int
	firstErr error
	seen     map[string]int // violations by kind/group
	first    []string       // the first of each kind/group, in words

	stop chan struct{}
	done chan struct{}
}

type watchState struct {
	watchedGroup
	armed    bool            // the floor reached once
	low      int             // samples in a row below the floor
	owed     map[string]bool // excused servers not yet made good
	attached bool            // the floating IP seen on a server
}

// startDevcloudMonitor starts sampling the groups on the named cloud of
// cloudsFile; Check stops it and reports.
func startDevcloudMonitor(t *testing.T, ctx context.Context, cloudsFile, cloudName string, groups ...watchedGroup) *devcloudMonitor {
	t.Helper()
	provider := namedProvider(t, ctx, cloudsFile, cloudName)
	var err error
	m := &devcloudMonitor{excused: map[string]bool{}, seen: map[string]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, g := range groups {
		if g.HealthPort == 0 {
			g.HealthPort = responderPort
		}
		if g.Network == "" {
			g.Network = "phoenix-net"
		}
		if g.Pool != "" && m.lbc == nil {
			if m.lbc, err = gcopenstack.NewLoadBalancerV2(provider, gophercloud.EndpointOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		m.groups = append(m.groups, &watchState{watchedGroup: g, owed: map[string]bool{}})
	}
	if m.nc, err = gcopenstack.NewNetworkV2(provider, gophercloud.EndpointOpts{}); err != nil {
		t.Fatal(err)
	}
	if m.compute, err = gcopenstack.NewComputeV2(provider, gophercloud.EndpointOpts{}); err != nil {
		t.Fatal(err)
	}
	m.compute.Microversion = "2.26" // tags in the list
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(m.done)
		for {
			m.sample(sctx)
			select {
			case <-m.stop:
				return
			case <-time.After(500 * time.Millisecond): // the sampling period
			}
		}
	}()
	t.Cleanup(func() { m.halt(); cancel() })
	return m
}

// SetFloatingIP names the floating IP of a group, once it is known.
func (m *devcloudMonitor) SetFloatingIP(group, floatingIPID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.groups {
		if g.Name == group {
			g.FloatingIP = floatingIPID
		}
	}
}

// Excuse tells the monitor that the test is about to make a server sick
// or compromised: its removal is expected. Call it before doing so.
func (m *devcloudMonitor) Excuse(serverID string) {
	m.mu.Lock()
	m.excused[serverID] = true
	m.mu.Unlock()
}

func (m *devcloudMonitor) halt() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// Check stops the sampling, takes a last sample and fails the test for
// each kind of violation seen.
func (m *devcloudMonitor) Check(t *testing.T) {
	t.Helper()
	m.halt()
	m.sample(context.Background())
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for _, n := range m.seen {
		total += n
	}
	t.Logf("monitor: %d samples, %d violations", m.samples, total)
	if m.failed > 0 {
		t.Logf("monitor: %d samples skipped, a read failed; the first: %v", m.failed, m.firstErr)
	}
	if m.samples == 0 {
		t.Errorf("monitor: no sample taken, so nothing was checked (%d reads failed; the first: %v)", m.failed, m.firstErr)
	}
	for _, v := range m.first {
		t.Errorf("monitor: %s", v)
	}
}

func (m *devcloudMonitor) violate(kind, group, format string, args ...any) {
	key := kind + "/" + group
	m.seen[key]++
	if m.seen[key] == 1 {
		m.first = append(m.first, fmt.Sprintf("%s: group %s: %s (at %s)", kind, group, fmt.Sprintf(format, args...), time.Now().Format("15:04:05.000")))
	}
}

// sample reads the pools' members, the floating IPs, the servers and the
// responder's sick list, and judges each group; a read that fails skips
// the sample.
func (m *devcloudMonitor) sample(ctx context.Context) {
	m.mu.Lock()
	groups := slices.Clone(m.groups)
	m.mu.Unlock()
	// Every fifth sample lists the whole project, for the orphans (they
	// carry no tag); the others only the groups' tags.
	var tags []string
	if m.listed%5 != 0 {
		for _, g := range groups {
			tags = append(tags, controller.GroupTag(g.Name))
		}
	}
	m.listed++
	// The reads go at once, so that a sample on a busy cloud takes as
	// long as its slowest read, not their sum: a server joins the traffic
	// only long after it was created, and leaves it a drain before it is
	// deleted, so reads a moment apart still agree.
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		members  = map[string][]pools.Member{}
		fips     []floatingips.FloatingIP
		list     []provisioner.Server
		sick     map[string]bool
	)
	fail := func(what string, err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
	}
	for _, g := range groups {
		if g.Pool == "" {
			continue
		}
		members[g.Pool] = nil
	}
	var membersMu sync.Mutex
	for pool := range members {
		wg.Go(func() {
			pages, err := pools.ListMembers(m.lbc, pool, nil).AllPages(ctx)
			var got []pools.Member
			if err == nil {
				got, err = pools.ExtractMembers(pages)
			}
			if err != nil {
				fail("members of pool "+pool, err)
				return
			}
			membersMu.Lock()
			members[pool] = got
			membersMu.Unlock()
		})
	}
	wg.Go(func() {
		pages, err := floatingips.List(m.nc, floatingips.ListOpts{}).AllPages(ctx)
		if err == nil {
			fips, err = floatingips.ExtractFloatingIPs(pages)
		}
		if err != nil {
			fail("floating IPs", err)
		}
	})
	wg.Go(func() {
		var err error
		if list, err = m.listProject(ctx, strings.Join(tags, ",")); err != nil {
			fail("servers", err)
		}
	})
	wg.Go(func() {
		var ok bool
		if sick, ok = responderSick(ctx); !ok {
			fail("the responder's sick list", errors.New("no answer"))
		}
	})
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	if firstErr != nil {
		m.failed++
		if m.firstErr == nil {
			m.firstErr = firstErr
		}
		return
	}
	m.samples++
	for _, g := range groups {
		m.judge(ctx, g, list, members[g.Pool], fips, sick)
	}
}

// listProject lists the servers of the project carrying any of tagsAny
// (comma-separated; "" lists them all), as much of each as the judging
// needs.
func (m *devcloudMonitor) listProject(ctx context.Context, tagsAny string) ([]provisioner.Server, error) {
	pages, err := servers.List(m.compute, servers.ListOpts{TagsAny: tagsAny}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	var raw []struct {
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		Status    string            `json:"status"`
		TaskState *string           `json:"OS-EXT-STS:task_state"`
		Metadata  map[string]string `json:"metadata"`
		Tags      []string          `json:"tags"`
		Addresses map[string][]struct {
			Addr string `json:"addr"`
		} `json:"addresses"`
	}
	if err := servers.ExtractServersInto(pages, &raw); err != nil {
		return nil, err
	}
	out := make([]provisioner.Server, 0, len(raw))
	seen := map[string]int{}
	for _, r := range raw {
		s := provisioner.Server{ID: r.ID, Name: r.Name, Status: r.Status, Metadata: r.Metadata, Tags: r.Tags, Addresses: map[string][]string{}}
		if r.TaskState != nil {
			s.TaskState = *r.TaskState
		}
		for net, addrs := range r.Addresses {
			for _, a := range addrs {
				s.Addresses[net] = append(s.Addresses[net], a.Addr)
			}
		}
		// While a server is scheduled Nova may list it twice (a build
		// request and an instance): count it once, the further along.
		if j, dup := seen[s.ID]; dup {
			if out[j].Status == provisioner.StatusBuild {
				out[j] = s
			}
			continue
		}
		seen[s.ID] = len(out)
		out = append(out, s)
	}
	return out, nil
}

func (m *devcloudMonitor) judge(ctx context.Context, g *watchState, servers []provisioner.Server, members []pools.Member, fips []floatingips.FloatingIP, sick map[string]bool) {
	tag := controller.GroupTag(g.Name)
	inPool := map[string]bool{}
	for _, mb := range members {
		if mb.Weight > 0 && mb.AdminStateUp {
			inPool[mb.Address] = true
		}
	}
	total, serving := 0, 0
	active := map[string]provisioner.Server{} // by address
	for _, s := range servers {
		tagged := slices.Contains(s.Tags, tag)
		if !tagged {
			if s.Metadata[controller.MetaGroup] == g.Name {
				m.violate("orphan", g.Name, "server %s (%s) records the group but carries no tag %s", s.Name, s.ID, tag)
			}
			continue
		}
		if m.excused[s.ID] {
			g.owed[s.ID] = true
			continue
		}
		if s.Gone() {
			continue
		}
		total++
		addrs := s.Addresses[g.Network]
		if s.Status != provisioner.StatusActive || len(addrs) == 0 {
			continue
		}
		addr := addrs[0]
		if s.TaskState == "" {
			active[addr] = s
		}
		if s.TaskState != "" || !m.healthy(ctx, g, addr, sick) || (g.Pool != "" && !inPool[addr]) {
			continue
		}
		serving++
	}
	if ceiling := g.Count + g.Surge; total > ceiling {
		m.violate("bound", g.Name, "%d servers, above count %d + max_surge %d", total, g.Count, g.Surge)
	}
	floor := g.Count - g.Unavailable
	if serving >= g.Count {
		clear(g.owed)
	}
	switch {
	case serving >= floor:
		g.armed, g.low = true, 0
	case g.armed && serving < floor-len(g.owed):
		g.low++
		if g.low == 2 {
			m.violate("availability", g.Name, "%d servers serving in two samples in a row, below count %d − max_unavailable %d", serving, g.Count, g.Unavailable)
		}
	}
	m.judgeForeign(g, members)
	m.judgeFloatingIP(g, fips, active)
}

func (m *devcloudMonitor) judgeForeign(g *watchState, members []pools.Member) {
	for _, f := range g.Foreign {
		i := slices.IndexFunc(members, func(mb pools.Member) bool { return mb.ID == f.ID })
		if i < 0 {
			m.violate("foreign", g.Name, "member %s (%s) of another application is gone from pool %s", f.ID, f.Address, g.Pool)
			continue
		}
		mb := members[i]
		if mb.Address != f.Address || mb.ProtocolPort != f.ProtocolPort || mb.Weight != f.Weight ||
			mb.AdminStateUp != f.AdminStateUp || !slices.Equal(mb.Tags, f.Tags) {
			m.violate("foreign", g.Name, "member %s of another application changed: %s:%d weight %d up %v tags %v, was %s:%d weight %d up %v tags %v",
				f.ID, mb.Address, mb.ProtocolPort, mb.Weight, mb.AdminStateUp, mb.Tags, f.Address, f.ProtocolPort, f.Weight, f.AdminStateUp, f.Tags)
		}
	}
}

// judgeFloatingIP checks the group's floating IP: once attached, it points
// at an ACTIVE server of the group. The address moves in one Neutron call,
// and Phoenix deletes the old server only after it moved.
func (m *devcloudMonitor) judgeFloatingIP(g *watchState, fips []floatingips.FloatingIP, active map[string]provisioner.Server) {
	desc := "phoenix:group:" + g.Name
	for _, f := range fips {
		if f.ID != g.FloatingIP && (g.FloatingIP != "" || f.Description != desc) {
			continue
		}
		if f.PortID == "" {
			if g.attached {
				m.violate("floating-ip", g.Name, "floating IP %s points nowhere after it was attached", f.FloatingIP)
			}
			continue
		}
		g.attached = true
		if _, ok := active[f.FixedIP]; !ok {
			m.violate("floating-ip", g.Name, "floating IP %s points at %s, no ACTIVE server of the group", f.FloatingIP, f.FixedIP)
		}
	}
}

// healthy says whether the server at addr answers its health check: the
// devcloud responder's list of sick addresses, or a probe of another port.
func (m *devcloudMonitor) healthy(ctx context.Context, g *watchState, addr string, sick map[string]bool) bool {
	if g.HealthPort == responderPort {
		return !sick[addr]
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d%s", addr, g.HealthPort, g.HealthPath), nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode/100 == 2
}

// responderSick is the set of addresses the devcloud responder answers as
// unhealthy.
func responderSick(ctx context.Context) (map[string]bool, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/_responder/unhealthy", responderPort), nil)
	if err != nil {
		return nil, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	sick := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		sick[l] = true
	}
	return sick, true
}
