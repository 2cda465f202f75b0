package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The simulator is tested through gophercloud, the client it must fool,
// with microversions set by hand so the traps of the real API show.

// env is a running simulator and clients authenticated to it.
type env struct {
	sim      *sim.Sim
	provider *gophercloud.ProviderClient
	// compute speaks microversion 2.52, Phoenix's.
	compute, image, network *gophercloud.ServiceClient
	netID                   string    // the preloaded network "private"
	img                     sim.Image // an active image to boot from
}

func start(t testing.TB, opts sim.Options) *env {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	e := &env{sim: s}
	e.provider, err = openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: "demo", Password: "demo-secret", DomainName: "Default",
		TenantName: "demo", AllowReauth: true,
	})
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	if e.compute, err = openstack.NewComputeV2(e.provider, gophercloud.EndpointOpts{}); err != nil {
		t.Fatal(err)
	}
	e.compute.Microversion = "2.52"
	if e.image, err = openstack.NewImageV2(e.provider, gophercloud.EndpointOpts{}); err != nil {
		t.Fatal(err)
	}
	if e.network, err = openstack.NewNetworkV2(e.provider, gophercloud.EndpointOpts{}); err != nil {
		t.Fatal(err)
	}
	pages, err := networks.List(e.network, networks.ListOpts{Name: "private"}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nets, _ := networks.ExtractNetworks(pages)
	if len(nets) != 1 {
		t.Fatalf("networks named private: %d", len(nets))
	}
	e.netID = nets[0].ID
	e.img = s.AddImage(sim.Image{Name: "base"})
	return e
}

// port is the simulator's health port, as a URL takes it.
func (e *env) port() string { return strconv.Itoa(e.sim.HealthPort()) }

// freePorts returns n ports the kernel found free, for tests that name
// their servers' health ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// at is the compute client at another microversion.
func at(c *gophercloud.ServiceClient, mv string) *gophercloud.ServiceClient {
	cc := *c
	cc.Microversion = mv
	return &cc
}

func (e *env) opts(name string, tags ...string) servers.CreateOpts {
	return servers.CreateOpts{Name: name, ImageRef: e.img.ID, FlavorRef: "1",
		Networks: []servers.Network{{UUID: e.netID}}, Tags: tags}
}

func (e *env) create(t testing.TB, o servers.CreateOptsBuilder) *servers.Server {
	t.Helper()
	srv, err := servers.Create(context.Background(), e.compute, o, nil).Extract()
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return srv
}

// raw sends a request with the token and a microversion, for what
// gophercloud does not expose (headers, exact bodies).
func (e *env) raw(t testing.TB, method, path, mv string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.sim.Endpoint()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", e.provider.Token())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if mv != "" {
		req.Header.Set("X-OpenStack-Nova-API-Version", mv)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countRequests(s *sim.Sim, method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func errorBody(t testing.TB, err error) string {
	t.Helper()
	var code gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &code) {
		t.Fatalf("error %v is not an HTTP error", err)
	}
	return string(code.Body)
}

func TestAuthAndCatalog(t *testing.T) {
	e := start(t, sim.Options{Region: "RegionTwo"})
	res, ok := e.provider.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("auth result %T", e.provider.GetAuthResult())
	}
	catalog, err := res.ExtractServiceCatalog()
	if err != nil {
		t.Fatal(err)
	}
	project, err := res.ExtractProject()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"identity":      e.sim.Endpoint() + "/identity",
		"compute":       e.sim.Endpoint() + "/compute/v2.1",
		"image":         e.sim.Endpoint() + "/image",
		"network":       e.sim.Endpoint() + "/networking",
		"load-balancer": e.sim.Endpoint() + "/load-balancer",
		"volumev3":      e.sim.Endpoint() + "/volume/v3/" + project.ID,
	}
	for _, entry := range catalog.Entries {
		url, ok := want[entry.Type]
		if !ok {
			t.Errorf("unexpected catalog entry %s", entry.Type)
			continue
		}
		delete(want, entry.Type)
		ifaces := map[string]bool{}
		for _, ep := range entry.Endpoints {
			ifaces[ep.Interface] = true
			if ep.URL != url || ep.Region != "RegionTwo" || ep.RegionID != "RegionTwo" {
				t.Errorf("%s endpoint %+v, want %s in RegionTwo", entry.Type, ep, url)
			}
		}
		if len(ifaces) != 3 || !ifaces["public"] || !ifaces["internal"] || !ifaces["admin"] {
			t.Errorf("%s interfaces %v", entry.Type, ifaces)
		}
	}
	if len(want) > 0 {
		t.Errorf("catalog lacks %v", want)
	}
	if project.Name != "demo" || project.Domain.Name != "Default" || project.Domain.ID != "default" {
		t.Errorf("project %+v", project)
	}
	user, err := res.ExtractUser()
	if err != nil || user.Name != "demo" || user.ID == "" {
		t.Errorf("user %+v, %v", user, err)
	}
	tok, err := res.ExtractToken()
	if err != nil || time.Until(tok.ExpiresAt) < 50*time.Minute || time.Until(tok.ExpiresAt) > time.Hour {
		t.Errorf("token %+v, %v: want an hour's life", tok, err)
	}
	if roles, err := res.ExtractRoles(); err != nil || len(roles) == 0 {
		t.Errorf("roles %v, %v", roles, err)
	}
	if !strings.HasPrefix(e.compute.Endpoint, e.sim.Endpoint()+"/compute/v2.1") ||
		e.image.ResourceBase != e.sim.Endpoint()+"/image/v2/" || e.network.ResourceBase != e.sim.Endpoint()+"/networking/v2.0/" {
		t.Errorf("service clients: compute %s image %s network %s", e.compute.Endpoint, e.image.ResourceBase, e.network.ResourceBase)
	}
}

func TestAuthFailures(t *testing.T) {
	e := start(t, sim.Options{})
	cases := []struct {
		name string
		ao   gophercloud.AuthOptions
		want int
	}{
		{"right", gophercloud.AuthOptions{Username: "demo", Password: "demo-secret", DomainName: "Default", TenantName: "demo"}, 0},
		{"by domain ID", gophercloud.AuthOptions{Username: "demo", Password: "demo-secret", DomainID: "default", TenantName: "demo"}, 0},
		{"wrong password", gophercloud.AuthOptions{Username: "demo", Password: "nope", DomainName: "Default", TenantName: "demo"}, 401},
		{"wrong user", gophercloud.AuthOptions{Username: "admin", Password: "demo-secret", DomainName: "Default", TenantName: "demo"}, 401},
		{"wrong domain", gophercloud.AuthOptions{Username: "demo", Password: "demo-secret", DomainName: "Other", TenantName: "demo"}, 401},
		{"wrong project", gophercloud.AuthOptions{Username: "demo", Password: "demo-secret", DomainName: "Default", TenantName: "admin"}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.ao.IdentityEndpoint = e.sim.AuthURL()
			_, err := openstack.AuthenticatedClient(context.Background(), tc.ao)
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("auth failed: %v", err)
			case tc.want != 0 && !gophercloud.ResponseCodeIs(err, tc.want):
				t.Fatalf("err = %v, want %d", err, tc.want)
			case tc.want == 401 && !strings.Contains(errorBody(t, err), `"title":"Unauthorized"`):
				t.Fatalf("401 body is not Keystone's: %s", errorBody(t, err))
			}
		})
	}

	// Without a token every service answers 401 in keystonemiddleware's shape.
	for _, path := range []string{"/compute/v2.1/servers/detail", "/image/v2/images", "/networking/v2.0/networks"} {
		resp, err := http.Get(e.sim.Endpoint() + path)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code int } `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 401 || err != nil || body.Error.Code != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a token: %d %+v %v", path, resp.StatusCode, body, err)
		}
	}
}

func TestExpiredTokenIsRefreshed(t *testing.T) {
	e := start(t, sim.Options{})
	ctx := context.Background()
	if _, err := servers.List(e.compute, nil).AllPages(ctx); err != nil {
		t.Fatal(err)
	}
	e.sim.ExpireTokens()
	e.sim.ResetRequests()
	if _, err := servers.List(e.compute, nil).AllPages(ctx); err != nil {
		t.Fatalf("after the token expired: %v (AllowReauth should have refreshed it)", err)
	}
	var statuses []string
	for _, r := range e.sim.Requests() {
		statuses = append(statuses, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
	}
	want := []string{"GET /compute/v2.1/servers/detail 401", "POST /identity/v3/auth/tokens 201", "GET /compute/v2.1/servers/detail 200"}
	if strings.Join(statuses, "; ") != strings.Join(want, "; ") {
		t.Fatalf("requests %v, want %v", statuses, want)
	}

	// A client that may not re-authenticate sees the 401.
	p, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: e.sim.AuthURL(),
		Username: "demo", Password: "demo-secret", DomainName: "Default", TenantName: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := openstack.NewComputeV2(p, gophercloud.EndpointOpts{})
	e.sim.ExpireTokens()
	if _, err := servers.List(c, nil).AllPages(ctx); !gophercloud.ResponseCodeIs(err, 401) {
		t.Fatalf("expired token without reauth: %v, want 401", err)
	}
}

func TestCloudsYAML(t *testing.T) {
	e := start(t, sim.Options{})
	path := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := e.sim.WriteCloudsYAML(path, "sim-cloud"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("clouds.yaml mode %v, %v; want 0600", fi.Mode(), err)
	}
	ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudName("sim-cloud"), clouds.WithLocations(path))
	if err != nil {
		t.Fatal(err)
	}
	p, err := config.NewProviderClient(context.Background(), ao, config.WithTLSConfig(tlsConfig))
	if err != nil {
		t.Fatalf("authenticate from clouds.yaml: %v", err)
	}
	c, err := openstack.NewComputeV2(p, eo)
	if err != nil || !strings.HasPrefix(c.Endpoint, e.sim.Endpoint()) {
		t.Fatalf("compute from clouds.yaml: %v %v", c, err)
	}
	if eo.Region != "RegionOne" || eo.Availability != gophercloud.AvailabilityPublic {
		t.Errorf("endpoint options %+v", eo)
	}
}

func TestMicroversions(t *testing.T) {
	cases := []struct {
		max          string
		wantMaxMinor int
	}{{"", 96}, {"2.60", 60}}
	for _, tc := range cases {
		e := start(t, sim.Options{MaxMicroversion: tc.max})
		mv, err := utils.GetSupportedMicroversions(context.Background(), e.compute)
		if err != nil || mv.MaxMajor != 2 || mv.MaxMinor != tc.wantMaxMinor || mv.MinMajor != 2 || mv.MinMinor != 1 {
			t.Fatalf("max %q: microversions %+v, %v", tc.max, mv, err)
		}
		if _, err := utils.RequireMicroversion(context.Background(), *e.compute, "2.52"); err != nil {
			t.Fatalf("2.52 not supported: %v", err)
		}
	}

	e := start(t, sim.Options{MaxMicroversion: "2.60"})
	headers := []struct {
		name, header, value string
		status              int
		echo                string
	}{
		{"none is 2.1", "", "", 200, "2.1"},
		{"legacy header", "X-OpenStack-Nova-API-Version", "2.52", 200, "2.52"},
		{"new header", "OpenStack-API-Version", "compute 2.53", 200, "2.53"},
		{"latest", "X-OpenStack-Nova-API-Version", "latest", 200, "2.60"},
		{"above the maximum", "X-OpenStack-Nova-API-Version", "2.61", 406, ""},
		{"below the minimum", "X-OpenStack-Nova-API-Version", "2.0", 406, ""},
		{"malformed", "X-OpenStack-Nova-API-Version", "two", 400, ""},
	}
	for _, h := range headers {
		t.Run(h.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.sim.Endpoint()+"/compute/v2.1/servers", nil)
			req.Header.Set("X-Auth-Token", e.provider.Token())
			if h.header != "" {
				req.Header.Set(h.header, h.value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != h.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, h.status)
			}
			if h.echo != "" && (resp.Header.Get("X-OpenStack-Nova-API-Version") != h.echo ||
				resp.Header.Get("OpenStack-API-Version") != "compute "+h.echo || !strings.Contains(resp.Header.Get("Vary"), "OpenStack-API-Version")) {
				t.Fatalf("headers %v, want %s echoed", resp.Header, h.echo)
			}
		})
	}
	if _, err := servers.List(at(e.compute, "2.61"), nil).AllPages(context.Background()); !gophercloud.ResponseCodeIs(err, http.StatusNotAcceptable) {
		t.Fatalf("gophercloud above the maximum: %v, want 406", err)
	}
	last := e.sim.Requests()[len(e.sim.Requests())-1]
	if last.Microversion != "2.61" || last.Status != 406 || last.Service != "compute" {
		t.Fatalf("request log %+v", last)
	}
}

func TestNetworks(t *testing.T) {
	e := start(t, sim.Options{})
	extra := e.sim.AddNetwork(sim.Network{Name: "backend"})
	ctx := context.Background()
	for name, want := range map[string]string{"backend": extra.ID, "private": e.netID} {
		pages, err := networks.List(e.network, networks.ListOpts{Name: name}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, err := networks.ExtractNetworks(pages)
		if err != nil || len(list) != 1 || list[0].ID != want || list[0].Status != "ACTIVE" || list[0].CreatedAt.IsZero() {
			t.Fatalf("network %s: %+v, %v", name, list, err)
		}
	}
	pages, _ := networks.List(e.network, nil).AllPages(ctx)
	// private, the external public, and backend.
	if all, _ := networks.ExtractNetworks(pages); len(all) != 3 {
		t.Fatalf("all networks: %d, want 3", len(all))
	}
	got, err := networks.Get(ctx, e.network, extra.ID).Extract()
	if err != nil || got.Name != "backend" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	_, err = networks.Get(ctx, e.network, "nope").Extract()
	if !gophercloud.ResponseCodeIs(err, 404) || !strings.Contains(errorBody(t, err), "NeutronError") {
		t.Fatalf("missing network: %v", err)
	}
}

// TestConcurrentUse drives the API and the control methods at once; run
// with -race it checks the locking.
func TestConcurrentUse(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.LogNormal(5*time.Millisecond, 30*time.Millisecond),
		HealthDelay: sim.Fixed(time.Millisecond), DeleteTime: sim.Fixed(5 * time.Millisecond), Seed: 7})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				srv, err := servers.Create(ctx, e.compute, e.opts(fmt.Sprintf("w%d-%d", w, i), "conc"), nil).Extract()
				if err != nil {
					errs <- err
					return
				}
				if _, err := servers.List(e.compute, servers.ListOpts{Tags: "conc", Limit: 3}).AllPages(ctx); err != nil {
					errs <- err
					return
				}
				_ = e.sim.SetHealth(srv.ID, sim.Health(i%3))
				if i%2 == 0 {
					if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			_ = e.sim.Servers()
			_ = e.sim.Requests()
			e.sim.AddImage(sim.Image{Name: "churn"})
			if _, err := images.List(e.image, images.ListOpts{Name: "churn"}).AllPages(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, "deletes to finish", func() bool { return len(e.sim.Servers()) == 24 })
}

func TestCloseLeavesNothingRunning(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()
	e := start(t, sim.Options{BootTime: sim.Fixed(time.Millisecond), HealthDelay: sim.Fixed(time.Millisecond),
		DeleteTime: sim.Fixed(time.Hour), HealthPorts: freePorts(t, 2)})
	var ids []string
	for i := range 5 {
		ids = append(ids, e.create(t, e.opts(fmt.Sprint("s", i))).ID)
	}
	e.sim.StickNextBoots(1)
	e.create(t, e.opts("stuck"))
	waitFor(t, "healthy", func() bool {
		n := 0
		for _, v := range e.sim.Servers() {
			if v.Healthy {
				n++
			}
		}
		return n == 5
	})
	addr := e.sim.Servers()[0].Address
	// A probe holds a keep-alive connection to a health listener.
	resp, err := http.Get("http://" + addr + ":" + e.port() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_ = servers.Delete(context.Background(), e.compute, ids[1]).ExtractErr() // a delete timer pending
	mon := e.sim.Monitor(time.Millisecond, func(sim.Server) string { return "all" })
	_ = e.sim.InjectFault(sim.Fault{Service: "compute", Path: `^/servers/detail$`, Action: sim.Hang})
	done := make(chan error, 1)
	go func() {
		_, err := servers.List(e.compute, nil).AllPages(context.Background())
		done <- err
	}()
	waitFor(t, "the hung request", func() bool { return countRequests(e.sim, "GET", "/compute/v2.1/servers/detail") == 1 })

	e.sim.Close()
	noSimGoroutinesLeft(t)
	e.sim.Close() // twice is fine
	if err := <-done; err == nil {
		t.Error("a hung request got an answer")
	}
	_ = mon.Stop()
	if _, err := http.Get("http://" + addr + ":" + e.port() + "/"); err == nil {
		t.Error("a health listener outlived Close")
	}
	if _, err := http.Get(e.sim.Endpoint() + "/identity/v3"); err == nil {
		t.Error("the API outlived Close")
	}
	http.DefaultClient.CloseIdleConnections()
	e.provider.HTTPClient.CloseIdleConnections()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestLogNormal(t *testing.T) {
	d := sim.LogNormal(100*time.Millisecond, time.Second)
	r := rand.New(rand.NewPCG(42, 42))
	var below, above int
	const n = 20000
	for range n {
		x := d(r)
		if x < 100*time.Millisecond {
			below++
		}
		if x > time.Second {
			above++
		}
	}
	if below < n*45/100 || below > n*55/100 {
		t.Errorf("%d of %d draws below the median", below, n)
	}
	if above < n*5/1000 || above > n*15/1000 {
		t.Errorf("%d of %d draws above the p99", above, n)
	}
	if got := sim.Fixed(3 * time.Second)(r); got != 3*time.Second {
		t.Errorf("Fixed drew %v", got)
	}
}

// simGoroutines are the stacks of goroutines that serve HTTP or run the
// simulator's code.
// noSimGoroutinesLeft fails the test unless the simulator's goroutines
// are gone after Close. Close returns only once they are done (servers,
// connections, timers, the monitor), but a goroutine reports its end (a
// WaitGroup's Done, http.StateClosed) a few instructions before it
// returns: on a busy machine one may still be on its way out for a while.
func noSimGoroutinesLeft(t *testing.T) {
	t.Helper()
	var leftover []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if leftover = simGoroutines(); len(leftover) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling the goroutines on their way out
	}
	if len(leftover) > 0 {
		t.Fatalf("goroutines still running after Close:\n%s", strings.Join(leftover, "\n\n"))
	}
}

func simGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "net/http.(*conn).serve") || strings.Contains(g, "net/http.(*Server).Serve") ||
			strings.Contains(g, "/provisioner/openstack/sim.") {
			out = append(out, g)
		}
	}
	return out
}
