package sim_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// regional is one region as a client reaches it: service clients found
// in the catalog of the one token by the region's name.
type regional struct {
	name                    string
	sim                     *sim.Sim
	compute, image, network *gophercloud.ServiceClient
	netID                   string // the region's own network "private"
	img                     sim.Image
}

// startRegions starts a simulator with the regions asked for beside
// RegionOne and authenticates once, at the primary's Keystone.
func startRegions(t testing.TB, opts sim.Options) (*sim.Sim, *gophercloud.ProviderClient, map[string]*regional) {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	p, err := openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: "demo", Password: "demo-secret", DomainName: "Default",
		TenantName: "demo", AllowReauth: true,
	})
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	t.Cleanup(p.HTTPClient.CloseIdleConnections)
	out := map[string]*regional{}
	for _, name := range s.Regions() {
		out[name] = connect(t, p, s, name)
	}
	return s, p, out
}

// connect builds a region's clients from an authenticated provider.
func connect(t testing.TB, p *gophercloud.ProviderClient, s *sim.Sim, name string) *regional {
	t.Helper()
	r := &regional{name: name, sim: s.Region(name)}
	if r.sim == nil {
		t.Fatalf("no region %s", name)
	}
	eo := gophercloud.EndpointOpts{Region: name}
	var err error
	if r.compute, err = openstack.NewComputeV2(p, eo); err != nil {
		t.Fatalf("compute in %s: %v", name, err)
	}
	r.compute.Microversion = "2.52"
	if r.image, err = openstack.NewImageV2(p, eo); err != nil {
		t.Fatalf("image in %s: %v", name, err)
	}
	if r.network, err = openstack.NewNetworkV2(p, eo); err != nil {
		t.Fatalf("network in %s: %v", name, err)
	}
	pages, err := networks.List(r.network, networks.ListOpts{Name: "private"}).AllPages(context.Background())
	if err != nil {
		t.Fatalf("networks in %s: %v", name, err)
	}
	nets, _ := networks.ExtractNetworks(pages)
	if len(nets) != 1 {
		t.Fatalf("networks named private in %s: %d", name, len(nets))
	}
	r.netID = nets[0].ID
	r.img = r.sim.AddImage(sim.Image{Name: "base-" + name})
	return r
}

func (r *regional) create(t testing.TB, name string) *servers.Server {
	t.Helper()
	srv, err := servers.Create(context.Background(), r.compute, servers.CreateOpts{Name: name, ImageRef: r.img.ID,
		FlavorRef: "1", Networks: []servers.Network{{UUID: r.netID}}}, nil).Extract()
	if err != nil {
		t.Fatalf("create %s in %s: %v", name, r.name, err)
	}
	return srv
}

func (r *regional) list(ctx context.Context) ([]string, error) {
	pages, err := servers.List(r.compute, nil).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers in %s: %w", r.name, err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, fmt.Errorf("list servers in %s: %w", r.name, err)
	}
	return names(list), nil
}

// waitHealthy waits until the region's server answers health checks.
func (r *regional) waitHealthy(t testing.TB, id string) sim.Server {
	t.Helper()
	var v sim.Server
	waitFor(t, "server "+id+" healthy in "+r.name, func() bool {
		var ok bool
		v, ok = r.sim.Server(id)
		return ok && v.Healthy
	})
	return v
}

func TestRegionsOptions(t *testing.T) {
	cases := []struct {
		name    string
		opts    sim.Options
		want    []string
		wantErr string
	}{
		{"one region", sim.Options{}, []string{"RegionOne"}, ""},
		{"three", sim.Options{Regions: []string{"RegionTwo", "RegionThree"}}, []string{"RegionOne", "RegionTwo", "RegionThree"}, ""},
		{"primary named", sim.Options{Region: "north", Regions: []string{"south"}}, []string{"north", "south"}, ""},
		{"empty name", sim.Options{Regions: []string{""}}, nil, "a region needs a name"},
		{"twice", sim.Options{Regions: []string{"RegionTwo", "RegionTwo"}}, nil, `region "RegionTwo" given twice`},
		{"the primary again", sim.Options{Regions: []string{"RegionOne"}}, nil, `region "RegionOne" given twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sim.New(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New: %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Regions(); !slices.Equal(got, tc.want) {
				t.Fatalf("Regions() = %v, want %v", got, tc.want)
			}
			if s.Region(tc.want[0]) != s || s.Region("nowhere") != nil {
				t.Fatal("Region: the primary is not its own region, or an unknown one exists")
			}
			endpoints := map[string]bool{}
			for _, name := range tc.want {
				r := s.Region(name)
				if r == nil || r.RegionName() != name || r.AuthURL() != s.AuthURL() ||
					!slices.Equal(r.Regions(), tc.want) || r.Region(tc.want[0]) != s || r.HealthPort() != s.HealthPort() {
					t.Fatalf("region %s: %v", name, r)
				}
				endpoints[r.Endpoint()] = true
			}
			if len(endpoints) != len(tc.want) {
				t.Fatalf("regions share listeners: %v", endpoints)
			}
		})
	}
}

// Every region is in the catalog of the one token, whichever way it was
// got, with every service at its three interfaces.
func TestRegionsCatalog(t *testing.T) {
	s, err := sim.New(sim.Options{Regions: []string{"RegionTwo", "RegionThree"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ac := s.Region("RegionThree").AddApplicationCredential("phoenix") // Keystone's, whichever region is asked
	auths := []struct {
		name string
		ao   gophercloud.AuthOptions
	}{
		{"password", gophercloud.AuthOptions{Username: "demo", Password: "demo-secret", DomainName: "Default", TenantName: "demo"}},
		{"application credential", gophercloud.AuthOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret}},
	}
	for _, a := range auths {
		t.Run(a.name, func(t *testing.T) {
			a.ao.IdentityEndpoint = s.AuthURL()
			p, err := openstack.AuthenticatedClient(context.Background(), a.ao)
			if err != nil {
				t.Fatalf("authenticate: %v", err)
			}
			defer p.HTTPClient.CloseIdleConnections()
			catalog, err := p.GetAuthResult().(tokens.CreateResult).ExtractServiceCatalog()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{} // type region interface → URL
			for _, entry := range catalog.Entries {
				for _, ep := range entry.Endpoints {
					if ep.Region != ep.RegionID {
						t.Errorf("%s endpoint region %q, region_id %q", entry.Type, ep.Region, ep.RegionID)
					}
					got[entry.Type+" "+ep.Region+" "+ep.Interface] = ep.URL
				}
			}
			for _, region := range s.Regions() {
				base := s.Region(region).Endpoint()
				want := map[string]string{
					"identity":      s.Endpoint() + "/identity", // one Keystone, in every region
					"compute":       base + "/compute/v2.1",
					"image":         base + "/image",
					"network":       base + "/networking",
					"load-balancer": base + "/load-balancer",
					"volumev3":      base + "/volume/v3/" + s.ProjectID(),
				}
				for typ, url := range want {
					for _, iface := range []string{"public", "internal", "admin"} {
						if k := typ + " " + region + " " + iface; got[k] != url {
							t.Errorf("%s: %q, want %q", k, got[k], url)
						}
					}
				}
			}
			if len(got) != 3*6*3 {
				t.Errorf("catalog has %d endpoints, want %d", len(got), 3*6*3)
			}

			// Each region's clients reach that region, and its Keystone
			// only at the primary.
			for _, region := range s.Regions() {
				r := s.Region(region)
				r.ResetRequests()
				c, err := openstack.NewComputeV2(p, gophercloud.EndpointOpts{Region: region})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := servers.List(c, nil).AllPages(context.Background()); err != nil {
					t.Fatalf("list in %s: %v", region, err)
				}
				if n := countRequests(r, "GET", "/compute/v2.1/servers/detail"); n != 1 {
					t.Errorf("%s saw %d lists, want 1", region, n)
				}
			}
		})
	}
	resp, err := http.Get(s.Region("RegionTwo").Endpoint() + "/identity/v3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a region's own identity: %d, want 404 (Keystone is the primary's)", resp.StatusCode)
	}
}

// Regions share nothing but Keystone: servers, images and networks of
// one are not in another, though both are seeded alike.
func TestRegionsAreSeparate(t *testing.T) {
	_, _, rs := startRegions(t, sim.Options{Regions: []string{"RegionTwo"}})
	one, two := rs["RegionOne"], rs["RegionTwo"]
	ctx := context.Background()
	srv := two.create(t, "web-two")
	gold := one.sim.AddImage(sim.Image{Name: "gold"})

	cases := []struct {
		r                     *regional
		servers, images, gold []string
	}{
		{one, []string{}, []string{"base-RegionOne", "gold"}, []string{"gold"}},
		{two, []string{"web-two"}, []string{"base-RegionTwo"}, []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.r.name, func(t *testing.T) {
			got, err := tc.r.list(ctx)
			if err != nil || !slices.Equal(got, tc.servers) {
				t.Errorf("servers %v, %v; want %v", got, err, tc.servers)
			}
			var truth []string
			for _, v := range tc.r.sim.Servers() {
				truth = append(truth, v.Name)
			}
			if !slices.Equal(truth, tc.servers) {
				t.Errorf("the region's own servers %v, want %v", truth, tc.servers)
			}
			if got := imageNames(t, tc.r.image, nil); !slices.Equal(slices.Sorted(slices.Values(got)), tc.images) {
				t.Errorf("images %v, want %v", got, tc.images)
			}
			if got := imageNames(t, tc.r.image, images.ListOpts{Name: "gold"}); !slices.Equal(got, tc.gold) {
				t.Errorf("images named gold %v, want %v", got, tc.gold)
			}
			// Seeded alike: a configuration naming these works anywhere.
			pages, err := flavors.ListDetail(tc.r.compute, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fl, _ := flavors.ExtractFlavors(pages)
			if !slices.ContainsFunc(fl, func(f flavors.Flavor) bool { return f.Name == "m1.small" }) {
				t.Errorf("flavors %v lack m1.small", fl)
			}
		})
	}
	if one.netID == two.netID {
		t.Errorf("both regions' network private is %s: want an ID each", one.netID)
	}
	if _, ok := one.sim.Server(srv.ID); ok {
		t.Errorf("RegionOne knows RegionTwo's server %s", srv.ID)
	}
	// Another region's image or network is unknown, as on a real cloud.
	_, err := servers.Create(ctx, two.compute, servers.CreateOpts{Name: "x", ImageRef: gold.ID, FlavorRef: "1",
		Networks: []servers.Network{{UUID: two.netID}}}, nil).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("create in RegionTwo from RegionOne's image: %v, want 400", err)
	}
	_, err = servers.Create(ctx, one.compute, servers.CreateOpts{Name: "x", ImageRef: one.img.ID, FlavorRef: "1",
		Networks: []servers.Network{{UUID: two.netID}}}, nil).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("create in RegionOne on RegionTwo's network: %v, want 400", err)
	}
}

// A region that fails, by fault or by going down, fails alone: the other
// serves on with the same token, the failed one's servers keep running
// and answering health checks, and it serves again once healed.
func TestRegionFailsAlone(t *testing.T) {
	connErr := func(err error) bool {
		var code gophercloud.ErrUnexpectedResponseCode
		return err != nil && !errors.As(err, &code)
	}
	cases := []struct {
		name      string
		bad, good string
		fail      func(*sim.Sim) error
		heal      func(*sim.Sim) error
		want      func(error) bool
	}{
		{"compute answers 503", "RegionTwo", "RegionOne",
			func(s *sim.Sim) error {
				return s.InjectFault(sim.Fault{Service: "compute", Action: sim.FailWith, Status: http.StatusServiceUnavailable})
			},
			func(s *sim.Sim) error { s.ClearFaults(); return nil },
			func(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable) }},
		{"API down", "RegionTwo", "RegionOne",
			func(s *sim.Sim) error { return s.SetDown(true) },
			func(s *sim.Sim) error { return s.SetDown(false) },
			connErr},
		// Keystone goes with the primary; tokens already held still work.
		{"primary down", "RegionOne", "RegionTwo",
			func(s *sim.Sim) error { return s.SetDown(true) },
			func(s *sim.Sim) error { return s.SetDown(false) },
			connErr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _, rs := startRegions(t, sim.Options{Regions: []string{"RegionTwo"},
				BootTime: sim.Fixed(time.Millisecond), HealthDelay: sim.Fixed(time.Millisecond)})
			bad, good := rs[tc.bad], rs[tc.good]
			ctx := context.Background()
			running := bad.create(t, "running")
			bad.waitHealthy(t, running.ID)
			booting := bad.create(t, "booting") // boots whatever happens to the API

			if err := tc.fail(bad.sim); err != nil {
				t.Fatal(err)
			}
			if _, err := bad.list(ctx); !tc.want(err) {
				t.Fatalf("list in the failed region: %v", err)
			}
			good.create(t, "elsewhere")
			if got, err := good.list(ctx); err != nil || !slices.Equal(got, []string{"elsewhere"}) {
				t.Fatalf("list in the healthy region: %v, %v", got, err)
			}
			for _, id := range []string{running.ID, booting.ID} {
				v := bad.waitHealthy(t, id)
				if status, body := probe(t, v.Address, s.HealthPort()); status != http.StatusOK {
					t.Fatalf("server %s of the failed region: health %d %s", v.Name, status, body)
				}
			}

			if err := tc.heal(bad.sim); err != nil {
				t.Fatal(err)
			}
			if bad.sim.Down() {
				t.Fatal("healed, the region is still down")
			}
			if got, err := bad.list(ctx); err != nil || !slices.Equal(got, []string{"booting", "running"}) {
				t.Fatalf("list in the healed region: %v, %v", got, err)
			}
		})
	}
}

// A token that expires is renewed at the primary, from whichever region
// refused it, and the new one serves every region.
func TestRegionsReauthenticate(t *testing.T) {
	cases := []struct {
		name   string
		ttl    time.Duration
		expire func(t *testing.T, s *sim.Sim, p *gophercloud.ProviderClient)
	}{
		{"lifetime runs out", 500 * time.Millisecond, func(t *testing.T, _ *sim.Sim, p *gophercloud.ProviderClient) {
			tok, err := p.GetAuthResult().(tokens.CreateResult).ExtractToken()
			if err != nil {
				t.Fatal(err)
			}
			// expires_at is shown to the microsecond: past it by a little
			// more, the simulator's own expiry has passed too.
			waitFor(t, "the token to expire", func() bool { return time.Now().After(tok.ExpiresAt.Add(time.Millisecond)) })
		}},
		{"ExpireTokens on RegionTwo", 0, func(_ *testing.T, s *sim.Sim, _ *gophercloud.ProviderClient) {
			s.Region("RegionTwo").ExpireTokens()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, p, rs := startRegions(t, sim.Options{Regions: []string{"RegionTwo"}, TokenTTL: tc.ttl})
			ctx := context.Background()
			tc.expire(t, s, p)
			for _, name := range s.Regions() {
				s.Region(name).ResetRequests()
			}
			if _, err := rs["RegionTwo"].list(ctx); err != nil {
				t.Fatalf("after the token expired: %v (AllowReauth should have renewed it)", err)
			}
			var two []string
			for _, r := range s.Region("RegionTwo").Requests() {
				two = append(two, fmt.Sprint(r.Method, " ", r.Path, " ", r.Status))
			}
			if len(two) < 2 || two[0] != "GET /compute/v2.1/servers/detail 401" || two[len(two)-1] != "GET /compute/v2.1/servers/detail 200" {
				t.Errorf("RegionTwo saw %v: want a 401, then the list again with a new token", two)
			}
			if n := countRequests(s, "POST", "/identity/v3/auth/tokens"); n < 1 {
				t.Errorf("the primary's Keystone issued %d tokens, want the renewal", n)
			}
			if _, err := rs["RegionOne"].list(ctx); err != nil {
				t.Fatalf("RegionOne with the renewed token: %v", err)
			}
			if tc.ttl == 0 { // the new token lives an hour: no second renewal
				if n := countRequests(s, "GET", "/compute/v2.1/servers/detail"); n != 1 {
					t.Errorf("RegionOne listed %d times, want once with the renewed token", n)
				}
			}
		})
	}
}

// Close of the primary closes every region, down or hung ones included,
// and leaves no goroutine behind.
func TestCloseClosesEveryRegion(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	s, p, rs := startRegions(t, sim.Options{Regions: []string{"RegionTwo", "RegionThree"},
		BootTime: sim.Fixed(time.Millisecond), HealthDelay: sim.Fixed(time.Millisecond), DeleteTime: sim.Fixed(time.Hour)})
	var addrs []string
	for _, name := range s.Regions() {
		r := rs[name]
		srv := r.create(t, "app")
		addrs = append(addrs, r.waitHealthy(t, srv.ID).Address)
		_ = servers.Delete(context.Background(), r.compute, srv.ID).ExtractErr() // a delete timer pending
	}
	two := s.Region("RegionTwo")
	_ = two.InjectFault(sim.Fault{Service: "compute", Path: `^/servers/detail$`, Action: sim.Hang})
	done := make(chan error, 1)
	go func() {
		_, err := rs["RegionTwo"].list(context.Background())
		done <- err
	}()
	waitFor(t, "the hung request", func() bool { return countRequests(two, "GET", "/compute/v2.1/servers/detail") == 1 })
	if err := s.Region("RegionThree").SetDown(true); err != nil {
		t.Fatal(err)
	}

	s.Close()
	noSimGoroutinesLeft(t)
	if err := <-done; err == nil {
		t.Error("a hung request got an answer")
	}
	for i, name := range s.Regions() {
		r := s.Region(name)
		if err := r.SetDown(false); err == nil {
			t.Errorf("%s came back up after Close", name)
		}
		if status, _ := probe(t, addrs[i], s.HealthPort()); status != 0 {
			t.Errorf("a health listener of %s outlived Close: %d", name, status)
		}
		if _, err := http.Get(r.Endpoint() + "/compute/"); err == nil {
			t.Errorf("the API of %s outlived Close", name)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	p.HTTPClient.CloseIdleConnections()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
