package openstack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// These tests run the gophercloud provisioner against the simulator over
// HTTP and read the simulator's request log to see what really went over
// the wire.

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func spec(env *simtest.Env, name, tag string) provisioner.ServerSpec {
	img := env.Sim.AddImage(sim.Image{Name: "img-" + name})
	nets := env.Sim.AddNetwork(sim.Network{Name: "net-" + name})
	return provisioner.ServerSpec{
		Name: name, ImageID: img.ID, FlavorID: "2", NetworkIDs: []string{nets.ID},
		Metadata: map[string]string{"phoenix:group": tag}, Tags: []string{tag},
	}
}

func requests(s *sim.Sim, method, pathSuffix string) []sim.Request {
	var out []sim.Request
	for _, r := range s.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, pathSuffix) {
			out = append(out, r)
		}
	}
	return out
}

func TestListServersOneRequestPerPage(t *testing.T) {
	cases := []struct {
		servers, pageSize, wantRequests int
	}{
		{10, 4, 3}, // 4 + 4 + 2
		{8, 4, 3},  // 4 + 4 + an empty page: Nova adds a next link to every full page
		{3, 0, 1},  // the cloud's page size
		{0, 4, 1},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d servers at %d a page", tc.servers, tc.pageSize), func(t *testing.T) {
			env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0)}, tc.pageSize)
			s := spec(env, "web", "phoenix-group:web")
			for i := range tc.servers {
				s.Name = fmt.Sprintf("web-%d", i)
				if _, err := env.Cloud.CreateServer(ctx(t), s); err != nil {
					t.Fatal(err)
				}
			}
			other := spec(env, "db", "phoenix-group:db")
			if _, err := env.Cloud.CreateServer(ctx(t), other); err != nil {
				t.Fatal(err)
			}
			env.Sim.ResetRequests()
			list, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web")
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != tc.servers {
				t.Fatalf("listed %d servers, want %d", len(list), tc.servers)
			}
			for _, srv := range list {
				if srv.Metadata["phoenix:group"] != "phoenix-group:web" || !strings.HasPrefix(srv.Name, "web-") {
					t.Errorf("listed a server of another group: %+v", srv)
				}
			}
			if got := len(env.Sim.Requests()); got != tc.wantRequests {
				t.Errorf("%d requests, want %d (one per page): %+v", got, tc.wantRequests, env.Sim.Requests())
			}
		})
	}
}

func TestCreateSendsEverythingInOneCall(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0)}, 0)
	env.Sim.AddKeypair("ops")
	env.Sim.AddSecurityGroup("web")
	sg := env.Sim.AddServerGroup("web-anti", "anti-affinity")
	s := spec(env, "web-1", "phoenix-group:web")
	s.KeyName, s.SecurityGroups, s.ServerGroupID, s.AvailabilityZone = "ops", []string{"web"}, sg, "az2"
	s.UserData = []byte("#cloud-config\n")
	created, err := env.Cloud.CreateServer(ctx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := env.Sim.Server(created.ID)
	if !ok {
		t.Fatal("the created server is not in the simulator")
	}
	if got.KeyName != "ops" || got.AvailabilityZone != "az2" || got.Metadata["phoenix:group"] != "phoenix-group:web" ||
		len(got.Tags) != 1 || got.Tags[0] != "phoenix-group:web" {
		t.Fatalf("server as created: %+v", got)
	}
	if n := len(requests(env.Sim, "POST", "/servers")); n != 1 {
		t.Fatalf("%d create requests, want 1", n)
	}
}

func TestCreateIsNeverSentTwice(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			env := simtest.Start(t, sim.Options{}, 0)
			s := spec(env, "web-1", "phoenix-group:web")
			if err := env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.FailWith, Status: status, Times: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := env.Cloud.CreateServer(ctx(t), s)
			if !errors.Is(err, provisioner.ErrUnknownOutcome) {
				t.Fatalf("error = %v, want an unknown outcome", err)
			}
			if n := len(requests(env.Sim, "POST", "/servers")); n != 1 {
				t.Fatalf("create sent %d times for one %d, want once", n, status)
			}
		})
	}
}

func TestCreateThatHappenedIsFoundByTheNextList(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	s := spec(env, "web-1", "phoenix-group:web")
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.CommitThenFail, Status: 500, Times: 1})
	if _, err := env.Cloud.CreateServer(ctx(t), s); !errors.Is(err, provisioner.ErrUnknownOutcome) {
		t.Fatalf("error = %v, want an unknown outcome", err)
	}
	list, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web")
	if err != nil || len(list) != 1 || list[0].Name != "web-1" {
		t.Fatalf("list after a lost answer = %+v, %v; want the one server that was created", list, err)
	}
}

func TestCreateThatNeverAnswersTimesOut(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0, func(o *openstack.Options) { o.Retry.RequestTimeout = 300 * time.Millisecond })
	s := spec(env, "web-1", "phoenix-group:web")
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers$`, Action: sim.Hang, Times: 1})
	start := time.Now()
	_, err := env.Cloud.CreateServer(ctx(t), s)
	if !errors.Is(err, provisioner.ErrUnknownOutcome) {
		t.Fatalf("error = %v, want an unknown outcome", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("a hung create took %v to give up; the request timeout is 300ms", elapsed)
	}
	if n := len(requests(env.Sim, "POST", "/servers")); n != 1 {
		t.Fatalf("create sent %d times, want once", n)
	}
}

// TestRetryAfterIsHonoured checks, from the simulator's arrival times,
// that a 429 or 503 with Retry-After is retried no sooner than asked, for
// a create (the one case a POST is retried) and for a list.
func TestRetryAfterIsHonoured(t *testing.T) {
	cases := []struct {
		name, method, path string
		status             int
		call               func(*simtest.Env, provisioner.ServerSpec) error
	}{
		{"create after 429", "POST", `^/servers$`, 429, func(env *simtest.Env, s provisioner.ServerSpec) error {
			_, err := env.Cloud.CreateServer(context.Background(), s)
			return err
		}},
		{"list after 429", "GET", `^/servers/detail$`, 429, func(env *simtest.Env, _ provisioner.ServerSpec) error {
			_, err := env.Cloud.ListServers(context.Background(), "phoenix-group:web")
			return err
		}},
		{"list after 503", "GET", `^/servers/detail$`, 503, func(env *simtest.Env, _ provisioner.ServerSpec) error {
			_, err := env.Cloud.ListServers(context.Background(), "phoenix-group:web")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := simtest.Start(t, sim.Options{}, 0)
			s := spec(env, "web-1", "phoenix-group:web")
			_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: tc.method, Path: tc.path, Action: sim.FailWith, Status: tc.status, RetryAfter: 1, Times: 1})
			if err := tc.call(env, s); err != nil {
				t.Fatalf("the retried request failed: %v", err)
			}
			suffix := strings.TrimSuffix(strings.TrimPrefix(tc.path, "^"), "$")
			reqs := requests(env.Sim, tc.method, suffix)
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want the refused one and one retry", len(reqs))
			}
			if gap := reqs[1].Time.Sub(reqs[0].Time); gap < time.Second {
				t.Fatalf("retried after %v, sooner than the 1s Retry-After", gap)
			}
		})
	}
}

func TestRetryAfterBeyondTheLimitIsNotWaitedOut(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.FailWith, Status: 429, RetryAfter: 3600, Times: 1})
	start := time.Now()
	_, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web")
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v; want a prompt error instead of an hour's wait", err, time.Since(start))
	}
}

func TestIdempotentRequestsRetryServerErrors(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.FailWith, Status: 500, Times: 2})
	if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
		t.Fatalf("list failed despite retries: %v", err)
	}
	if n := len(requests(env.Sim, "GET", "/servers/detail")); n != 3 {
		t.Fatalf("%d list requests, want 2 failures and a success", n)
	}
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "DELETE", Action: sim.FailWith, Status: 503, Times: 1})
	if err := env.Cloud.DeleteServer(ctx(t), "no-such-server"); err != nil {
		t.Fatalf("delete of a missing server after a 503: %v, want nil (404 is done)", err)
	}
}

func TestQuotaIsReportedWithNovasMessage(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	env.Sim.SetQuota(sim.Quota{Instances: 0})
	_, err := env.Cloud.CreateServer(ctx(t), spec(env, "web-1", "phoenix-group:web"))
	var q *provisioner.QuotaError
	if !errors.As(err, &q) {
		t.Fatalf("error = %v, want a quota error", err)
	}
	if want := "Quota exceeded for instances: Requested 1, but already used 0 of 0 instances"; q.Message != want {
		t.Fatalf("message = %q, want Nova's %q", q.Message, want)
	}
	if n := len(requests(env.Sim, "POST", "/servers")); n != 1 {
		t.Fatalf("a refused create was sent %d times", n)
	}
}

func TestRefusedCreateSaysWhy(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	s := spec(env, "web-1", "phoenix-group:web")
	s.FlavorID = "no-such-flavor"
	_, err := env.Cloud.CreateServer(ctx(t), s)
	var refused *provisioner.RefusedError
	if !errors.As(err, &refused) || refused.Status != 400 || !strings.Contains(refused.Message, "Flavor no-such-flavor could not be found") {
		t.Fatalf("error = %v, want a 400 refusal naming the flavor", err)
	}
}

// A list reuses what it decoded for a server whose answer did not change
// since the last list; every change, however small, shows in the next.
func TestListSeesEveryChangeBetweenLists(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(time.Hour)}, 2)
	var ids []string
	for i := range 3 {
		s := spec(env, fmt.Sprintf("web-%d", i), "phoenix-group:web")
		created, err := env.Cloud.CreateServer(ctx(t), s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.ID)
	}
	byID := func() map[string]provisioner.Server {
		list, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]provisioner.Server{}
		for _, s := range list {
			out[s.ID] = s
		}
		return out
	}
	for deadline := time.Now().Add(5 * time.Second); byID()[ids[0]].Status != provisioner.StatusActive; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never became ACTIVE")
		}
	}
	before := byID()
	if err := env.Cloud.SetServerMetadata(ctx(t), ids[1], map[string]string{"phoenix:phase": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Cloud.DeleteServer(ctx(t), ids[2]); err != nil {
		t.Fatal(err)
	}
	after := byID()
	if !reflect.DeepEqual(after[ids[0]], before[ids[0]]) {
		t.Errorf("an unchanged server reads differently: %+v, was %+v", after[ids[0]], before[ids[0]])
	}
	if after[ids[1]].Metadata["phoenix:phase"] != "x" || before[ids[1]].Metadata["phoenix:phase"] != "" {
		t.Errorf("metadata written between two lists: before %v, after %v", before[ids[1]].Metadata, after[ids[1]].Metadata)
	}
	if after[ids[2]].TaskState != provisioner.TaskDeleting || before[ids[2]].TaskState != "" {
		t.Errorf("a delete between two lists: task state before %q, after %q", before[ids[2]].TaskState, after[ids[2]].TaskState)
	}
}

func TestDeleteAndMetadata(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(time.Hour)}, 0)
	created, err := env.Cloud.CreateServer(ctx(t), spec(env, "web-1", "phoenix-group:web"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Cloud.SetServerMetadata(ctx(t), created.ID, map[string]string{"phoenix:phase": "deleting"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Cloud.DeleteServer(ctx(t), created.ID); err != nil {
		t.Fatal(err)
	}
	list, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web")
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v, %v", list, err)
	}
	got := list[0]
	if got.Metadata["phoenix:phase"] != "deleting" || got.Metadata["phoenix:group"] != "phoenix-group:web" {
		t.Errorf("metadata = %v: want the phase merged into what was there", got.Metadata)
	}
	if got.TaskState != provisioner.TaskDeleting {
		t.Errorf("task state = %q, want deleting", got.TaskState)
	}
	if err := env.Cloud.DeleteServer(ctx(t), "00000000-0000-0000-0000-000000000000"); err != nil {
		t.Errorf("delete of a server that is gone: %v, want nil", err)
	}
}

func TestResolveImage(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 2) // page size 2: matches span pages
	now := time.Now()
	ubuntu := map[string]string{"os_distro": "ubuntu"}
	oldest := env.Sim.AddImage(sim.Image{Name: "gold", Created: now.Add(-3 * time.Hour), Properties: ubuntu, Tags: []string{"gold"}})
	older := env.Sim.AddImage(sim.Image{Name: "gold", Created: now.Add(-2 * time.Hour), Properties: ubuntu, Tags: []string{"gold"}})
	newest := env.Sim.AddImage(sim.Image{Name: "gold", Created: now.Add(-1 * time.Hour), Properties: ubuntu})
	env.Sim.AddImage(sim.Image{Name: "gold", Created: now.Add(-time.Minute), Status: "deactivated", Properties: ubuntu, Tags: []string{"gold"}})
	debian := env.Sim.AddImage(sim.Image{Name: "gold", Created: now.Add(-4 * time.Hour), Properties: map[string]string{"os_distro": "debian"}})
	single := env.Sim.AddImage(sim.Image{Name: "bastion"})
	cases := []struct {
		name    string
		sel     provisioner.ImageSelector
		want    string
		wantErr string
	}{
		{"newest by name, skipping a deactivated one", provisioner.ImageSelector{Name: "gold", Newest: true}, newest.ID, ""},
		{"name alone is ambiguous", provisioner.ImageSelector{Name: "gold"}, "", "4 active images match"},
		{"property narrows", provisioner.ImageSelector{Name: "gold", Properties: map[string]string{"os_distro": "debian"}}, debian.ID, ""},
		{"tag narrows", provisioner.ImageSelector{Properties: ubuntu, Tags: []string{"gold"}, Newest: true}, older.ID, ""},
		{"unique name", provisioner.ImageSelector{Name: "bastion"}, single.ID, ""},
		{"by id", provisioner.ImageSelector{ID: oldest.ID}, oldest.ID, ""},
		{"no match", provisioner.ImageSelector{Name: "gold", Tags: []string{"nope"}}, "", "no active image matches"},
		{"missing id", provisioner.ImageSelector{ID: "00000000-0000-0000-0000-000000000000"}, "", "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, err := env.Cloud.ResolveImage(ctx(t), tc.sel)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case img.ID != tc.want:
				t.Fatalf("resolved %s (%s), want %s", img.ID, img.Created, tc.want)
			}
		})
	}
	if _, err := env.Cloud.ResolveImage(ctx(t), provisioner.ImageSelector{Name: "nope"}); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("missing image: %v, want ErrNotFound", err)
	}
}

func TestResolveNames(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	appNet := env.Sim.AddNetwork(sim.Network{Name: "app-net"})
	env.Sim.AddNetwork(sim.Network{Name: "dup"})
	env.Sim.AddNetwork(sim.Network{Name: "dup"})
	sg := env.Sim.AddServerGroup("web-anti", "anti-affinity")
	env.Sim.AddFlavor(sim.Flavor{ID: "99", Name: "m1.small"}) // a second m1.small

	check := func(what string, got string, err error, want, wantErr string) {
		t.Helper()
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: error = %v, want %q", what, err, wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", what, err)
		case got != want:
			t.Errorf("%s = %s, want %s", what, got, want)
		}
	}
	id, err := env.Cloud.ResolveFlavor(ctx(t), "m1.medium")
	check("flavor by name", id, err, "3", "")
	id, err = env.Cloud.ResolveFlavor(ctx(t), "4")
	check("flavor by id", id, err, "4", "")
	id, err = env.Cloud.ResolveFlavor(ctx(t), "m1.small")
	check("ambiguous flavor", id, err, "", "ambiguous")
	_, err = env.Cloud.ResolveFlavor(ctx(t), "m9.huge")
	if !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("missing flavor: %v, want ErrNotFound", err)
	}
	id, err = env.Cloud.ResolveNetwork(ctx(t), "app-net")
	check("network by name", id, err, appNet.ID, "")
	id, err = env.Cloud.ResolveNetwork(ctx(t), appNet.ID)
	check("network by id", id, err, appNet.ID, "")
	id, err = env.Cloud.ResolveNetwork(ctx(t), "dup")
	check("ambiguous network", id, err, "", "ambiguous")
	_, err = env.Cloud.ResolveNetwork(ctx(t), "nope")
	if !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("missing network: %v, want ErrNotFound", err)
	}
	id, err = env.Cloud.ResolveServerGroup(ctx(t), "web-anti")
	check("server group by name", id, err, sg, "")
}

func TestExpiredTokenIsRenewed(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	env.Sim.ExpireTokens()
	env.Sim.ResetRequests()
	if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
		t.Fatalf("list after the token expired: %v", err)
	}
	var saw401, reauth bool
	for _, r := range env.Sim.Requests() {
		saw401 = saw401 || r.Status == 401
		reauth = reauth || strings.HasSuffix(r.Path, "/auth/tokens") && r.Status == 201
	}
	if !saw401 || !reauth {
		t.Fatalf("want a 401 then a new token; requests: %+v", env.Sim.Requests())
	}
}

// TestSecretsStayOutOfLogsAndErrors runs a session at debug level, and a
// failed login, and looks for the password and tokens in everything
// Phoenix said.
func TestSecretsStayOutOfLogsAndErrors(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	env := simtest.Start(t, sim.Options{Password: "s3cr3t-Pa55word"}, 0, func(o *openstack.Options) { o.Logger = zap.New(core) })
	_ = env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "GET", Path: `^/servers/detail$`, Action: sim.FailWith, Status: 500, Times: 1})
	if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
		t.Fatal(err)
	}
	_, createErr := env.Cloud.CreateServer(ctx(t), provisioner.ServerSpec{Name: "x", ImageID: "nope", FlavorID: "1"})

	bad := filepath.Join(t.TempDir(), "clouds.yaml")
	body := strings.Replace(string(env.Sim.CloudsYAML("bad")), "s3cr3t-Pa55word", "wrong-Pa55word", 1)
	if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, authErr := openstack.New(ctx(t), openstack.Options{Cloud: "bad", CloudsFile: bad, Retry: simtest.FastRetry, Logger: zap.New(core)})
	if authErr == nil || !strings.Contains(authErr.Error(), "401") {
		t.Fatalf("login with a wrong password: %v, want a 401", authErr)
	}

	var said []string
	for _, e := range logs.All() {
		said = append(said, e.Message)
		for k, v := range e.ContextMap() {
			said = append(said, fmt.Sprintf("%s=%v", k, v))
		}
	}
	said = append(said, createErr.Error(), authErr.Error())
	for _, s := range said {
		for _, secret := range []string{"s3cr3t-Pa55word", "wrong-Pa55word", "gAAAAA"} {
			if strings.Contains(s, secret) {
				t.Errorf("a secret (%s) reached the output: %s", secret, s)
			}
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged at debug level: the test proves nothing")
	}
}

// A replica's id goes into the User-Agent of every request, and the
// simulator's request log shows it: with several replicas, the log tells
// which one called.
func TestUserAgentNamesTheReplica(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0)}, 0, func(o *openstack.Options) { o.UserAgent = "phoenix-replica/r-7" })
	env.Sim.ResetRequests()
	if _, err := env.Cloud.CreateServer(ctx(t), spec(env, "web", "phoenix-group:web")); err != nil {
		t.Fatal(err)
	}
	posts := requests(env.Sim, "POST", "/servers")
	if len(posts) != 1 {
		t.Fatalf("%d server creates in the log, want 1", len(posts))
	}
	if ua := posts[0].UserAgent; !strings.HasPrefix(ua, "phoenix-replica/r-7 phoenix ") {
		t.Fatalf("User-Agent %q does not start with the replica's id and phoenix", ua)
	}
}

// Every request names Phoenix's release in its User-Agent — the token
// request included — after the replica when there is one.
func TestUserAgentNamesTheRelease(t *testing.T) {
	for _, tc := range []struct {
		name             string
		version, replica string
		want             string
	}{
		{"release", "v9.8.7", "", "phoenix/v9.8.7 gophercloud/"},
		{"release and replica", "v9.8.7", "phoenix-replica/r-7", "phoenix-replica/r-7 phoenix/v9.8.7 gophercloud/"},
		{"no version known", "", "", "phoenix gophercloud/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0)}, 0, func(o *openstack.Options) {
				o.Version, o.UserAgent = tc.version, tc.replica
			})
			if _, err := env.Cloud.CreateServer(ctx(t), spec(env, "web", "phoenix-group:web")); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, r := range env.Sim.Requests() {
				seen[r.Service] = true
				if !strings.HasPrefix(r.UserAgent, tc.want) {
					t.Errorf("%s %s: User-Agent %q, want it to start %q", r.Method, r.Path, r.UserAgent, tc.want)
				}
			}
			if !seen["identity"] || !seen["compute"] {
				t.Errorf("the log holds requests to %v: the token request and compute calls are both needed to prove anything", seen)
			}
		})
	}
}
