package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// The simulator is tested through gophercloud itself, the client it must
// fool, with microversions set by hand so the traps of the real API can be
// shown.

type clients struct {
	compute, image *gophercloud.ServiceClient
}

func start(t testing.TB, opts sim.Options) (*sim.Sim, clients) {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	provider, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: "demo", Password: "demo-secret", DomainName: "Default",
		TenantName: "demo", AllowReauth: true,
	})
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	compute, err := openstack.NewComputeV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	image, err := openstack.NewImageV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	return s, clients{compute, image}
}

func at(c *gophercloud.ServiceClient, microversion string) *gophercloud.ServiceClient {
	cc := *c
	cc.Microversion = microversion
	return &cc
}

func create(t *testing.T, s *sim.Sim, c *gophercloud.ServiceClient, name string, tags ...string) *servers.Server {
	t.Helper()
	img := s.AddImage(sim.Image{Name: "img"})
	srv, err := servers.Create(context.Background(), c, servers.CreateOpts{Name: name, ImageRef: img.ID, FlavorRef: "1", Tags: tags}, nil).Extract()
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return srv
}

func TestWrongPasswordIs401(t *testing.T) {
	s, _ := start(t, sim.Options{})
	_, err := openstack.AuthenticatedClient(context.Background(), gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: "demo", Password: "nope", DomainName: "Default", TenantName: "demo"})
	if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Fatalf("err = %v, want 401", err)
	}
}

func TestMicroversionDiscoveryAndLimits(t *testing.T) {
	_, c := start(t, sim.Options{MaxMicroversion: "2.60"})
	mv, err := utils.GetSupportedMicroversions(context.Background(), c.compute)
	if err != nil || mv.MaxMinor != 60 || mv.MinMinor != 1 {
		t.Fatalf("microversions %+v, %v", mv, err)
	}
	_, err = servers.List(at(c.compute, "2.61"), nil).AllPages(context.Background())
	if !gophercloud.ResponseCodeIs(err, http.StatusNotAcceptable) {
		t.Fatalf("a microversion above the maximum: %v, want 406", err)
	}
}

// TestTagFilterIgnoredBelow226 shows the trap Phoenix guards against: Nova
// silently ignores the tags filter below microversion 2.26 and lists
// everything.
func TestTagFilterIgnoredBelow226(t *testing.T) {
	s, c := start(t, sim.Options{})
	create(t, s, at(c.compute, "2.52"), "a", "team-a")
	create(t, s, at(c.compute, "2.52"), "b", "team-b")
	count := func(mv string) int {
		pages, err := servers.List(at(c.compute, mv), servers.ListOpts{Tags: "team-a"}).AllPages(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		list, _ := servers.ExtractServers(pages)
		return len(list)
	}
	if n := count("2.52"); n != 1 {
		t.Errorf("at 2.52 the tag filter listed %d servers, want 1", n)
	}
	if n := count("2.1"); n != 2 {
		t.Errorf("at 2.1 the tag filter listed %d servers, want 2 (ignored, as real Nova)", n)
	}
}

func TestStrictCreateValidation(t *testing.T) {
	s, c := start(t, sim.Options{})
	img := s.AddImage(sim.Image{Name: "img"})
	cases := []struct {
		name string
		mv   string
		opts servers.CreateOptsBuilder
		want string
	}{
		{"tags before 2.52", "2.51", servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "1", Tags: []string{"t"}}, "'tags' was unexpected"},
		{"unknown image", "2.52", servers.CreateOpts{Name: "x", ImageRef: "nope", FlavorRef: "1"}, "Image nope could not be found."},
		{"unknown flavor", "2.52", servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "nope"}, "Flavor nope could not be found."},
		{"tag with a comma", "2.52", servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "1", Tags: []string{"a,b"}}, "does not match"},
		{"reserved characters in metadata", "2.52", servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "1", Metadata: map[string]string{"a/b": "c"}}, "does not match"},
		{"unknown key pair", "2.52", keypairOpts{servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "1"}}, "Invalid key_name provided."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := servers.Create(context.Background(), at(c.compute, tc.mv), tc.opts, nil).Extract()
			if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want 400 saying %q", err, tc.want)
			}
		})
	}
	if n := len(s.Servers()); n != 0 {
		t.Fatalf("%d servers exist after only refused creates", n)
	}
}

type keypairOpts struct{ servers.CreateOpts }

func (o keypairOpts) ToServerCreateMap() (map[string]any, error) {
	m, err := o.CreateOpts.ToServerCreateMap()
	m["server"].(map[string]any)["key_name"] = "missing"
	return m, err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLifecycleAndHealthEndpoint(t *testing.T) {
	s, c := start(t, sim.Options{BootTime: sim.Fixed(20 * time.Millisecond), HealthDelay: sim.Fixed(10 * time.Millisecond), DeleteTime: sim.Fixed(50 * time.Millisecond), HealthPorts: []int{8080, 9100}})
	srv := create(t, s, at(c.compute, "2.52"), "web-1", "g")
	got, err := servers.Get(context.Background(), at(c.compute, "2.52"), srv.ID).Extract()
	if err != nil || got.Status != "BUILD" {
		t.Fatalf("right after create: %+v, %v; want BUILD", got, err)
	}
	waitFor(t, "healthy", func() bool { v, _ := s.Server(srv.ID); return v.Healthy })
	got, _ = servers.Get(context.Background(), at(c.compute, "2.52"), srv.ID).Extract()
	if got.Status != "ACTIVE" || got.LaunchedAt.IsZero() || got.Tags == nil || (*got.Tags)[0] != "g" {
		t.Fatalf("after boot: status %s launched %v tags %v", got.Status, got.LaunchedAt, got.Tags)
	}
	addr := got.Addresses["private"].([]any)[0].(map[string]any)["addr"].(string)
	if !strings.HasPrefix(addr, "127.") || addr == "127.0.0.1" {
		t.Fatalf("address %s is not the server's own loopback address", addr)
	}
	status := func(port int) int {
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/healthz", addr, port))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status(8080) != 200 || status(9100) != 200 {
		t.Fatalf("health endpoints answer %d and %d, want 200", status(8080), status(9100))
	}
	_ = s.SetHealth(srv.ID, sim.HealthFailing)
	if status(8080) != 503 {
		t.Fatalf("failing server answers %d, want 503", status(8080))
	}
	_ = s.SetHealth(srv.ID, sim.HealthDown)
	if _, err := net.DialTimeout("tcp", addr+":8080", time.Second); err == nil {
		t.Fatal("a down server still accepts connections")
	}
	_ = s.SetHealth(srv.ID, sim.HealthUp)
	if status(8080) != 200 {
		t.Fatal("a server switched back up does not answer")
	}

	if err := servers.Delete(context.Background(), at(c.compute, "2.52"), srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	got, err = servers.Get(context.Background(), at(c.compute, "2.52"), srv.ID).Extract()
	if err != nil || got.TaskState != "deleting" {
		t.Fatalf("right after delete: %+v, %v; want task state deleting", got, err)
	}
	if v, _ := s.Server(srv.ID); v.Healthy || !v.Deleting {
		t.Fatalf("a server being deleted counts as healthy: %+v", v)
	}
	waitFor(t, "gone", func() bool {
		_, err := servers.Get(context.Background(), at(c.compute, "2.52"), srv.ID).Extract()
		return gophercloud.ResponseCodeIs(err, http.StatusNotFound)
	})
	if status(8080) != 0 {
		t.Fatal("a deleted server still answers health checks")
	}
}

func TestBootFailures(t *testing.T) {
	s, c := start(t, sim.Options{BootTime: sim.Fixed(5 * time.Millisecond)})
	s.FailNextBoots(1)
	s.StickNextBoots(1)
	stuck := create(t, s, at(c.compute, "2.52"), "stuck")
	failed := create(t, s, at(c.compute, "2.52"), "failed")
	fine := create(t, s, at(c.compute, "2.52"), "fine")
	bad := s.AddImage(sim.Image{Name: "bad", BootFails: true})
	fromBad, err := servers.Create(context.Background(), at(c.compute, "2.52"), servers.CreateOpts{Name: "b", ImageRef: bad.ID, FlavorRef: "1"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "boots", func() bool {
		a, _ := s.Server(fine.ID)
		b, _ := s.Server(fromBad.ID)
		return a.Status == "ACTIVE" && b.Status == "ERROR"
	})
	for id, want := range map[string]string{stuck.ID: "BUILD", failed.ID: "ERROR", fine.ID: "ACTIVE", fromBad.ID: "ERROR"} {
		got, err := servers.Get(context.Background(), at(c.compute, "2.52"), id).Extract()
		if err != nil || got.Status != want {
			t.Errorf("server %s: %v %v, want %s", id, got.Status, err, want)
		}
		if want == "ERROR" && !strings.Contains(got.Fault.Message, "No valid host") {
			t.Errorf("server %s in ERROR has fault %+v", id, got.Fault)
		}
	}
}

func TestQuota(t *testing.T) {
	s, c := start(t, sim.Options{})
	s.SetQuota(sim.Quota{Instances: 1})
	create(t, s, at(c.compute, "2.52"), "one")
	img := s.AddImage(sim.Image{Name: "img"})
	_, err := servers.Create(context.Background(), at(c.compute, "2.52"), servers.CreateOpts{Name: "two", ImageRef: img.ID, FlavorRef: "1"}, nil).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusForbidden) || !strings.Contains(err.Error(), "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances") {
		t.Fatalf("err = %v, want Nova's 403", err)
	}
}

func TestFaults(t *testing.T) {
	s, c := start(t, sim.Options{Seed: 3})
	img := s.AddImage(sim.Image{Name: "img"})
	createOnce := func() error {
		_, err := servers.Create(context.Background(), at(c.compute, "2.52"), servers.CreateOpts{Name: "x", ImageRef: img.ID, FlavorRef: "1"}, nil).Extract()
		return err
	}
	_ = s.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.FailWith, Status: 500, Times: 1})
	if err := createOnce(); !gophercloud.ResponseCodeIs(err, 500) || len(s.Servers()) != 0 {
		t.Fatalf("FailWith: %v with %d servers, want 500 and none created", err, len(s.Servers()))
	}
	_ = s.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenFail, Status: 500, Times: 1})
	if err := createOnce(); !gophercloud.ResponseCodeIs(err, 500) || len(s.Servers()) != 1 {
		t.Fatalf("CommitThenFail: %v with %d servers, want 500 and one created", err, len(s.Servers()))
	}
	_ = s.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.FailWith, Status: 429, RetryAfter: 7, Times: 1})
	if err := createOnce(); !gophercloud.ResponseCodeIs(err, 429) {
		t.Fatalf("429: %v", err)
	} else if code, ok := err.(gophercloud.ErrUnexpectedResponseCode); !ok || code.ResponseHeader.Get("Retry-After") != "7" {
		t.Fatalf("429 without Retry-After: %#v", err)
	}
	if err := createOnce(); err != nil {
		t.Fatalf("a Times: 1 fault hit twice: %v", err)
	}

	_ = s.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.Hang, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := servers.List(at(c.compute, "2.52"), nil).AllPages(ctx); err == nil {
		t.Fatal("a hung list returned")
	}

	s.ResetRequests()
	_ = s.InjectFault(sim.Fault{Service: "image", Path: `^/v2/images$`, Action: sim.FailWith, Status: 503, Fraction: 0.5})
	hits := 0
	for range 200 {
		if _, err := images.List(c.image, nil).AllPages(context.Background()); err != nil {
			hits++
		}
	}
	if hits < 60 || hits > 140 {
		t.Fatalf("a 50%% fault hit %d of 200 requests", hits)
	}
	faulted := 0
	for _, r := range s.Requests() {
		if r.Faulted {
			faulted++
			if r.Status != 503 {
				t.Fatalf("faulted request logged with status %d", r.Status)
			}
		}
	}
	if faulted != hits {
		t.Fatalf("request log shows %d faulted requests, clients saw %d", faulted, hits)
	}
	s.ClearFaults()
	if _, err := images.List(c.image, nil).AllPages(context.Background()); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
}

func TestGlanceFiltersAndPages(t *testing.T) {
	s, c := start(t, sim.Options{})
	base := time.Now().Add(-time.Hour)
	for i := range 7 {
		s.AddImage(sim.Image{Name: "gold", Created: base.Add(time.Duration(i) * time.Minute),
			Properties: map[string]string{"os_distro": []string{"ubuntu", "debian"}[i%2]}, Tags: []string{"gold", fmt.Sprint("n", i)}})
	}
	s.AddImage(sim.Image{Name: "other"})
	var got []images.Image
	pages := 0
	opts := propertyQuery{images.ListOpts{Name: "gold", Sort: "created_at:desc", Limit: 2, Tags: []string{"gold"}}, "os_distro=ubuntu"}
	err := images.List(c.image, opts).EachPage(context.Background(), func(_ context.Context, p pagination.Page) (bool, error) {
		pages++
		list, err := images.ExtractImages(p)
		got = append(got, list...)
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || pages != 2 {
		t.Fatalf("%d images in %d pages, want the 4 ubuntu ones in 2 pages", len(got), pages)
	}
	for i := 1; i < len(got); i++ {
		if got[i].CreatedAt.After(got[i-1].CreatedAt) {
			t.Fatal("not newest first")
		}
	}
	if got[0].Properties["os_distro"] != "ubuntu" {
		t.Fatalf("custom property not at the top level: %+v", got[0].Properties)
	}
}

type propertyQuery struct {
	images.ListOpts
	extra string
}

func (q propertyQuery) ToImageListQuery() (string, error) {
	s, err := q.ListOpts.ToImageListQuery()
	return s + "&" + q.extra, err
}

func TestPublishImageOverTheAPI(t *testing.T) {
	s, c := start(t, sim.Options{})
	img, err := images.Create(context.Background(), c.image, images.CreateOpts{Name: "uploaded", Properties: map[string]string{"os_distro": "ubuntu"}}).Extract()
	if err != nil || img.Status != "queued" {
		t.Fatalf("create image: %+v, %v", img, err)
	}
	req, _ := http.NewRequest(http.MethodPut, s.Endpoint()+"/image/v2/images/"+img.ID+"/file", bytes.NewReader([]byte("qcow2")))
	req.Header.Set("X-Auth-Token", c.image.TokenID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	got, err := images.Get(context.Background(), c.image, img.ID).Extract()
	if err != nil || got.Status != "active" {
		t.Fatalf("after upload: %+v, %v", got, err)
	}
}

func TestUnauthenticatedRequestsAre401(t *testing.T) {
	s, _ := start(t, sim.Options{})
	resp, err := http.Get(s.Endpoint() + "/compute/v2.1/servers/detail")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Code int } `json:"error"`
	}
	if resp.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e.Error.Code != 401 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	s, c := start(t, sim.Options{BootTime: sim.Fixed(time.Millisecond), HealthDelay: sim.Fixed(time.Millisecond)})
	for i := range 5 {
		create(t, s, at(c.compute, "2.52"), fmt.Sprint("s", i))
	}
	waitFor(t, "healthy", func() bool {
		for _, v := range s.Servers() {
			if !v.Healthy {
				return false
			}
		}
		return true
	})
	addr := s.Servers()[0].Address
	_ = s.InjectFault(sim.Fault{Service: "compute", Path: `^/servers/detail$`, Action: sim.Hang})
	go func() { _, _ = servers.List(at(c.compute, "2.52"), nil).AllPages(context.Background()) }()
	waitFor(t, "the hung request to arrive", func() bool {
		return len(s.Requests()) > 0 && s.Requests()[len(s.Requests())-1].Path == "/compute/v2.1/servers/detail"
	})
	s.Close()
	http.DefaultClient.CloseIdleConnections()
	c.compute.HTTPClient.CloseIdleConnections()
	if _, err := net.DialTimeout("tcp", addr+":8080", time.Second); err == nil {
		t.Fatal("a server's health listener outlived Close")
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func BenchmarkListServers10k(b *testing.B) {
	s, c := start(b, sim.Options{BootTime: sim.Fixed(time.Hour)})
	img := s.AddImage(sim.Image{Name: "img"})
	cc := at(c.compute, "2.52")
	for i := range 10000 {
		tag := "phoenix-group:big"
		if i%10 == 0 {
			tag = "phoenix-group:other"
		}
		if _, err := servers.Create(context.Background(), cc, servers.CreateOpts{Name: fmt.Sprint("s", i), ImageRef: img.ID, FlavorRef: "1", Tags: []string{tag}}, nil).Extract(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		pages, err := servers.List(cc, servers.ListOpts{Tags: "phoenix-group:big"}).AllPages(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if list, _ := servers.ExtractServers(pages); len(list) != 9000 {
			b.Fatalf("listed %d", len(list))
		}
	}
}
