package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// daemonYAML is a configuration whose interval is an hour: anything that
// happens within a test happens because of an event or a wake-up, never
// because the interval came round.
func daemonYAML(groups ...string) string {
	return "controller: {interval: 1h}\ngroups:\n" + strings.Join(groups, "")
}

func daemonGroup(name, image, flavor string, count int, extra string) string {
	return fmt.Sprintf(`  - name: %s
    count: %d
    image: {name: %s, newest: true}
    flavor: %s
    networks: [private]
    rollout: {max_surge: 2, max_unavailable: 0, min_ready: 30ms}
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
      grace: 30s
%s`, name, count, image, flavor, extra)
}

type runningDaemon struct {
	*daemon.Daemon
	reg  *prometheus.Registry
	stop func()
}

// startDaemon runs a daemon on yaml with fast polls; tweaks change its
// options first.
func startDaemon(t testing.TB, env *simtest.Env, yaml string, tweaks ...func(*daemon.Options)) *runningDaemon {
	t.Helper()
	cfg, err := config.Parse("daemon.yaml", []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := daemon.NewMetrics(reg)
	opts := daemon.Options{Log: grouptest.Logger(t), Metrics: m, PollInterval: 50 * time.Millisecond, Reconciler: grouptest.FastOptions()}
	for _, tweak := range tweaks {
		tweak(&opts)
	}
	d := daemon.New(env.Cloud.Services(), cfg, opts)
	m.Watch(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	rd := &runningDaemon{Daemon: d, reg: reg}
	rd.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(rd.stop)
	return rd
}

// converged waits until every group of the daemon reports convergence
// and each named group's servers all run the wanted image.
func (d *runningDaemon) converged(t *testing.T, s *sim.Sim, want map[string]string) {
	t.Helper()
	grouptest.WaitUntil(t, 30*time.Second, "the groups to converge", func() bool {
		groups := d.Status().Groups
		if len(groups) < len(want) {
			return false // the workers have not started
		}
		for _, g := range groups {
			if g.InProgress || g.LastError != "" {
				return false
			}
		}
		for _, srv := range s.Servers() {
			if img, ok := want[grouptest.GroupOf(srv)]; ok && (srv.ImageID != img || !srv.Healthy) {
				return false
			}
		}
		return true
	})
}

func TestDaemonImagePublishedStartsRolloutAtOnce(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(800), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	other := env.Sim.AddImage(sim.Image{Name: "other", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(
		daemonGroup("web", "gold", "m1.small", 3, ""),
		daemonGroup("worker", "gold", "m1.medium", 2, ""),
		daemonGroup("api", "other", "m1.small", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "worker": gold.ID, "api": other.ID})
	api := grouptest.IDsOf(env.Sim, "api")

	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.ResetRequests()
	sent := time.Now()
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "e1", Type: trigger.TypeImagePublished}); err != nil {
		t.Fatal(err)
	}
	d.converged(t, env.Sim, map[string]string{"web": patched.ID, "worker": patched.ID, "api": other.ID})

	var firstCreate time.Time
	glanceLists := 0
	for _, r := range env.Sim.Requests() {
		if r.Service == "compute" && r.Method == "POST" && strings.HasSuffix(r.Path, "/servers") && firstCreate.IsZero() {
			firstCreate = r.Time
		}
		if r.Service == "image" && r.Method == "GET" && strings.HasSuffix(r.Path, "/v2/images") {
			glanceLists++
		}
	}
	if firstCreate.IsZero() || firstCreate.Sub(sent) > 5*time.Second {
		t.Errorf("first create %v after the event: the rollout waited for the interval (1h)", firstCreate.Sub(sent))
	}
	if got := grouptest.IDsOf(env.Sim, "api"); !slices.Equal(got, api) {
		t.Errorf("group api, on another selector, was touched: %v → %v", api, got)
	}
	// One Glance list per distinct selector and watch, not one per group:
	// two selectors here, a watch or two after the event.
	if glanceLists > 6 {
		t.Errorf("%d Glance image lists after the event for 2 selectors: the resolution is not shared", glanceLists)
	}
}

func TestDaemonSecurityPatchRebuildsNamedGroups(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(810), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 3, ""), daemonGroup("api", "gold", "m1.medium", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
	web, api := grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "api")

	err := d.Dispatch(context.Background(), trigger.Event{ID: "e2", Type: trigger.TypeSecurityPatch, Groups: []string{"nope"}, Reason: "CVE-2026-1"})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("an unknown group: %v, want an unknown target", err)
	}
	err = d.Dispatch(context.Background(), trigger.Event{ID: "e2b", Type: trigger.TypeSecurityPatch, Image: "no-such-image", Reason: "CVE-2026-1"})
	if !errors.Is(err, trigger.ErrUnknownTarget) {
		t.Fatalf("an image no group uses: %v, want an unknown target", err)
	}
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "e3", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-31337"}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "web to be rebuilt", func() bool {
		now := grouptest.IDsOf(env.Sim, "web")
		if len(now) != 3 {
			return false
		}
		for _, id := range now {
			if slices.Contains(web, id) {
				return false
			}
		}
		return !d.Status().Groups[1].InProgress
	})
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
	if got := grouptest.IDsOf(env.Sim, "api"); !slices.Equal(got, api) {
		t.Errorf("group api was rebuilt though the patch named only web")
	}
}

// A compromised server leaves its pool before anything else happens to its
// group, and every server built like it — same image, same revision, in
// any group — is replaced; a group of another revision is not.
func TestDaemonCompromisedServer(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(820), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "web-pool"})
	if err != nil {
		t.Fatal(err)
	}
	pool := "    traffic: {octavia: {pool: web-pool, protocol_port: 8080, drain: 200ms}}\n"
	d := startDaemon(t, env, daemonYAML(
		daemonGroup("web", "gold", "m1.small", 3, pool),
		daemonGroup("twin", "gold", "m1.small", 2, ""), // same spec: same revision
		daemonGroup("api", "gold", "m1.medium", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "twin": gold.ID, "api": gold.ID})
	grouptest.WaitUntil(t, 10*time.Second, "the pool to hold web", func() bool { return len(env.Sim.Members(lb.PoolID)) == 3 })
	web, twin, api := grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "twin"), grouptest.IDsOf(env.Sim, "api")
	victim, _ := env.Sim.Server(web[0])
	member := grouptest.MemberOf(env.Sim, lb.PoolID, victim.Address)

	env.Sim.ResetRequests()
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "e4", Type: trigger.TypeInstanceCompromised, Server: victim.ID, Reason: "IDS alert 4711"}); err != nil {
		t.Fatal(err)
	}
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "twin": gold.ID, "api": gold.ID})
	grouptest.WaitUntil(t, 30*time.Second, "web and twin to be rebuilt", func() bool {
		for _, ids := range [][]string{web, twin} {
			for _, id := range ids {
				if _, ok := env.Sim.Server(id); ok {
					return false
				}
			}
		}
		return len(grouptest.IDsOf(env.Sim, "web")) == 3 && len(grouptest.IDsOf(env.Sim, "twin")) == 2
	})
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "twin": gold.ID, "api": gold.ID})

	// The order of what web's servers saw after the event.
	webServers := map[string]bool{}
	for _, id := range web {
		webServers[id] = true
	}
	var removed time.Time
	removedAt, firstAction := -1, -1
	reqs := env.Sim.Requests()
	for i, r := range reqs {
		switch {
		case r.Method == "DELETE" && strings.HasSuffix(r.Path, "/members/"+member) && removedAt < 0:
			removedAt, removed = i, r.Time
		case r.Service == "compute" && r.Method != "GET" && firstAction < 0 && touches(r.Path, webServers) && !strings.HasSuffix(r.Path, "/metadata"):
			// Records (the compromise, the rebuild marks) are written
			// before the event is accepted; what must wait for the
			// member to leave is everything that acts on the servers.
			firstAction = i
		}
	}
	if removedAt < 0 {
		t.Fatalf("the compromised server's member %s was never deleted", member)
	}
	if firstAction >= 0 && firstAction < removedAt {
		t.Errorf("request %d touched web's servers before the compromised member left the pool (request %d)", firstAction, removedAt)
		dumpRequests(t, env.Sim, removedAt+2)
	}
	for _, s := range env.Sim.Servers() {
		if grouptest.GroupOf(s) == "web" && s.Created.Before(removed) {
			t.Errorf("web's new server %s was created before the compromised member left the pool", s.Name)
		}
	}
	if got := grouptest.IDsOf(env.Sim, "api"); !slices.Equal(got, api) {
		t.Errorf("group api (another revision) was rebuilt")
	}
	grouptest.AssertMembers(t, env.Sim, lb.PoolID, "web", 3)
}

func touches(path string, ids map[string]bool) bool {
	for id := range ids {
		if strings.Contains(path, id) {
			return true
		}
	}
	return false
}

// A second image published while the rollout to the first is in flight:
// the group ends on the newest, servers of the intermediate one are
// replaced too, and the bounds hold throughout.
func TestDaemonSecondImageMidRollout(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(830), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 6, "")))
	grouptest.WaitUntil(t, 30*time.Second, "the first build", func() bool { return len(d.Status().Groups) == 1 && !d.Status().Groups[0].InProgress })

	mon := env.Sim.Monitor(time.Millisecond, grouptest.GroupOf)
	b := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "b", Type: trigger.TypeImagePublished}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "a server on the intermediate image to serve", func() bool {
		for _, s := range env.Sim.Servers() {
			if s.ImageID == b.ID && s.Healthy {
				return true
			}
		}
		return false
	})
	c := env.Sim.AddImage(sim.Image{Name: "gold"})
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "c", Type: trigger.TypeImagePublished}); err != nil {
		t.Fatal(err)
	}
	d.converged(t, env.Sim, map[string]string{"web": c.ID})
	ext := mon.Stop()["web"]
	if ext.MinHealthy < 6 || ext.MaxTotal > 8 {
		t.Errorf("healthy fell to %d (floor 6), total reached %d (ceiling 8)", ext.MinHealthy, ext.MaxTotal)
	}
	if n := len(grouptest.IDsOf(env.Sim, "web")); n != 6 {
		t.Errorf("%d servers at the end, want 6", n)
	}
}

func TestDaemonReload(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(840), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})

	_, err := config.Parse("bad.yaml", []byte(daemonYAML(daemonGroup("web", "gold", "m1.small", 0, ""))), t.TempDir())
	if err == nil {
		t.Fatal("a count of 0 was accepted")
	}
	d.Refused(err)
	st := d.Status()
	if !strings.Contains(st.Config.Refused, "count") || len(st.Groups) != 1 {
		t.Errorf("status after a refused reload: %+v", st.Config)
	}

	next, err := config.Parse("daemon.yaml", []byte(daemonYAML(daemonGroup("web", "gold", "m1.small", 2, ""), daemonGroup("api", "gold", "m1.medium", 2, ""))), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	web := grouptest.IDsOf(env.Sim, "web")
	d.Reload(next)
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
	if len(grouptest.IDsOf(env.Sim, "api")) != 2 || !slices.Equal(grouptest.IDsOf(env.Sim, "web"), web) {
		t.Errorf("after the reload: api %v, web %v (was %v)", grouptest.IDsOf(env.Sim, "api"), grouptest.IDsOf(env.Sim, "web"), web)
	}
	if d.Status().Config.Refused != "" {
		t.Errorf("a good reload left the refusal in status")
	}
}

// /metrics parses as Prometheus text and its replacement counter moves
// with a rollout; /v1/status says what the simulator holds.
func TestDaemonMetricsAndStatus(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(850), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 3, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	srv := httptest.NewServer(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	before := scrape(t, srv.URL)["phoenix_replacements_total"]

	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	_ = d.Dispatch(context.Background(), trigger.Event{ID: "m", Type: trigger.TypeImagePublished})
	d.converged(t, env.Sim, map[string]string{"web": patched.ID})
	after := scrape(t, srv.URL)
	if got := after["phoenix_replacements_total"] - before; got != 3 {
		t.Errorf("phoenix_replacements_total moved by %v, want 3", got)
	}
	if after[`phoenix_servers`] != 3 || after["phoenix_reconciles_total"] == 0 || after["phoenix_health_probes_total"] == 0 {
		t.Errorf("metrics after the rollout: %v", after)
	}

	st := d.Status().Groups[0]
	truth := env.Sim.Servers()
	if st.DesiredImage.ID != patched.ID || st.Status.Current != len(truth) || st.Status.Available != 3 || st.InProgress {
		t.Errorf("status %+v, the simulator holds %d servers on %s", st, len(truth), patched.ID)
	}
}

// scrape parses /metrics with the Prometheus text parser and sums each
// family's samples.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func dumpRequests(t *testing.T, s *sim.Sim, n int) {
	for i, r := range s.Requests() {
		if i > n {
			return
		}
		t.Logf("%d %s %s %s %d", i, r.Service, r.Method, r.Path, r.Status)
	}
}

// With most of a group sick, the daemon heals none and raises the alert
// metric; with one sick, it heals it. (The servers served moments ago: with
// a watch, their falling sick would count against the image instead.)
func TestDaemonHealAlertMetric(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1110), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	group := strings.Replace(daemonGroup("web", "gold", "m1.small", 5, ""), "grace: 30s", "grace: 0s", 1)
	group = strings.Replace(group, "min_ready: 30ms}", "min_ready: 30ms, watch: 0s}", 1)
	d := startDaemon(t, env, daemonYAML(group))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	srv := httptest.NewServer(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	ids := grouptest.IDsOf(env.Sim, "web")
	for _, id := range ids[:3] { // 3 of 5 is more than 40%
		_ = env.Sim.SetHealth(id, sim.HealthFailing)
	}
	grouptest.WaitUntil(t, 20*time.Second, "the heal alert", func() bool { return scrape(t, srv.URL)["phoenix_heal_blocked"] == 1 })
	if st := d.Status().Groups[0]; !st.Status.HealBlocked || st.Status.Unhealthy != 3 {
		t.Errorf("status %+v, want heal blocked with 3 unhealthy", st.Status)
	}
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, ids) {
		t.Errorf("servers were replaced while the heal was blocked")
	}
	// Two recover: one sick of five is healed.
	_ = env.Sim.SetHealth(ids[0], sim.HealthUp)
	_ = env.Sim.SetHealth(ids[1], sim.HealthUp)
	grouptest.WaitUntil(t, 30*time.Second, "the sick server to be replaced", func() bool {
		_, ok := env.Sim.Server(ids[2])
		return !ok && len(grouptest.IDsOf(env.Sim, "web")) == 5
	})
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	if scrape(t, srv.URL)["phoenix_heal_blocked"] != 0 {
		t.Errorf("the heal alert is still raised")
	}
}

// At rest, a reconcile of every group costs one list request per page of
// servers and one image resolution per distinct selector — nothing per
// server, no write.
func TestSteadyStateCostsPagesPlusSelectors(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1200), 8) // 8 servers a page
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	env.Sim.AddImage(sim.Image{Name: "other", Created: time.Now().Add(-time.Hour)})
	var groups []string
	for i := range 6 {
		img := "gold"
		if i%3 == 0 {
			img = "other"
		}
		groups = append(groups, daemonGroup(fmt.Sprintf("g%d", i), img, "m1.small", 20, ""))
	}
	// 120 servers probed every 30ms with a 30ms timeout is 4,000 probes a
	// second: under -race on 2 cores they time out, and the servers flap
	// without end. This test counts cloud requests, not health verdicts,
	// so its probes are patient.
	yaml := strings.NewReplacer("interval: 30ms", "interval: 250ms", "timeout: 30ms", "timeout: 250ms").Replace(daemonYAML(groups...))
	d := startDaemon(t, env, yaml)
	// 120 servers under -race on a busy 2-core machine: ten seconds alone,
	// past a minute with the rest of the suite alongside.
	grouptest.WaitUntil(t, 3*time.Minute, "the groups to converge", func() bool {
		st := d.Status().Groups
		if len(st) != 6 {
			return false
		}
		for _, g := range st {
			if g.InProgress {
				return false
			}
		}
		return true
	})
	env.Sim.ResetRequests()
	before := time.Now()
	d.WakeAll()
	grouptest.WaitUntil(t, 10*time.Second, "a reconcile of every group", func() bool {
		for _, g := range d.Status().Groups {
			if !g.LastReconcile.After(before) {
				return false
			}
		}
		return true
	})
	d.stop() // lets the reconciles in flight finish
	// Pages of a list that began before the reset are left out: a page
	// with a marker counts only after the first page of its group.
	lists, firsts := map[string]int{}, map[string]int{}
	images, other := 0, 0
	for _, r := range env.Sim.Requests() {
		switch {
		case r.Service == "compute" && r.Method == "GET" && strings.HasSuffix(r.Path, "/servers/detail"):
			q, _ := url.ParseQuery(r.Query)
			g := q.Get("tags")
			if q.Get("marker") == "" {
				firsts[g]++
			}
			if firsts[g] > 0 {
				lists[g]++
			}
		case r.Service == "image" && r.Method == "GET":
			images++
		case r.Service == "identity":
		default:
			other++
			t.Logf("unexpected request %s %s", r.Method, r.Path)
		}
	}
	// 20 servers at 8 a page: 3 pages for each reconcile of a group (a
	// group may have been woken twice); the image watch's cache is fresh,
	// so no Glance request at all; nothing per server, no write.
	for i := range 6 {
		g := controller.GroupTag(fmt.Sprintf("g%d", i))
		if n, f := lists[g], firsts[g]; f == 0 || n != 3*f {
			t.Errorf("group g%d: %d list requests for %d reconciles, want 3 pages each", i, n, f)
		}
	}
	if images != 0 || other != 0 {
		t.Errorf("a reconcile at rest made %d image requests and %d other requests, want none", images, other)
	}
}

// The daemon's listener opens before Run starts the groups (so that
// /healthz answers at once). An event that arrives in between names a
// group that exists: the sender must be told to send it again (503), not
// that the group is unknown (422), or a security patch sent to a daemon
// just restarted would be lost.
func TestEventBeforeTheGroupsStartIsRetriedNotRefused(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(820), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	cfg, err := config.Parse("daemon.yaml", []byte(daemonYAML(daemonGroup("web", "gold", "m1.small", 2, ""))), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := daemon.New(env.Cloud.Services(), cfg, daemon.Options{Log: grouptest.Logger(t), PollInterval: 50 * time.Millisecond, Reconciler: grouptest.FastOptions()})
	secret := []byte("s3cret-for-the-test")
	srv := httptest.NewServer(&trigger.Handler{Secret: func() []byte { return secret }, Dispatcher: d, Log: grouptest.Logger(t)})
	t.Cleanup(srv.Close)
	client := retryablehttp.NewClient()
	client.Logger, client.RetryMax, client.ErrorHandler = nil, 0, retryablehttp.PassthroughErrorHandler
	patch := trigger.Event{ID: "patch-1", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-4242"}

	status, body, err := trigger.Send(context.Background(), client, srv.URL, secret, patch, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusServiceUnavailable {
		t.Fatalf("a patch for a configured group before the groups started: HTTP %d %s, want 503 (send again)", status, body)
	}
	if n := len(env.Sim.Servers()); n != 0 {
		t.Fatalf("the refused event changed the cloud: %d servers", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// The same event, sent again, is accepted once the groups run: the
	// 503 did not use up its id.
	grouptest.WaitUntil(t, 10*time.Second, "the event to be accepted once the groups run", func() bool {
		status, _, err = trigger.Send(context.Background(), client, srv.URL, secret, patch, time.Now())
		return err == nil && status == http.StatusAccepted
	})
	grouptest.WaitUntil(t, 30*time.Second, "web to come up on gold", func() bool {
		ids := grouptest.IDsOf(env.Sim, "web")
		if len(ids) != 2 {
			return false
		}
		for _, s := range env.Sim.Servers() {
			if s.ImageID != gold.ID {
				return false
			}
		}
		return true
	})
}
