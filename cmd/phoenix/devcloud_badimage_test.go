package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// The bad-image scenario's rollout settings: a new server not ready
// badImageDeadline after its create is a failure, and badImageFailures of
// them halt the rollout. The deadline judges the good servers too (the
// first build, the fixed image's rollout): on the development cloud
// shared with other tests (a load of 7–8 on the 2 cores) good servers
// were seen ACTIVE 7–32 s after their create and ready up to 51 s after
// it; a budget of two lets one good server miss the deadline without
// halting.
//
// badImageSlack is what a failed boot may cost besides its deadline: the
// image watch, the create (Nova answered in 5 s), the failure and halt
// records written on the servers before the delete (4–9 s a metadata
// write when busy), the delete, and the wait for the server to be gone
// before the next create. Seen: halts 135 s after the publication on a
// quiet cloud, 188–198 s on a busy one (about 35 s a failed boot).
const (
	badImageDeadline = 60 * time.Second
	badImageFailures = 2
	badImageInterval = 5 * time.Second // controller.interval: the image watch
	// badImageSlack is what a failed boot takes besides its deadline on
	// the loaded CI machine: a list (up to 15 s), the delete of the
	// failed server, the next create (up to 14 s) and its ACTIVE. With
	// 1m, a CI run halted 3 s past the bound.
	badImageSlack = 2 * time.Minute
)

// TestDevcloudBadImageHalts: a group of three behind a real Octavia pool
// that another application's member shares, run by a real phoenix daemon,
// converges on image A. Image B is published whose servers never pass
// their health check (a responder of the test's own answers 503 for
// them): the rollout must halt within its failure budget, keeping the
// three servers of A serving in the pool throughout and never letting a
// server of B into it. Image C, fixed, lifts the halt and the group
// converges on it. The cloud itself is checked (Nova, Octavia), and the
// independent monitor watches throughout.
func TestDevcloudBadImageHalts(t *testing.T) {
	if os.Getenv("PHOENIX_DEVCLOUD_CLOUDS") == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	t.Parallel()
	began := time.Now()
	run := startDevcloudRun(t, "e2e-bad")
	ctx, cloud, glance, group, tag := run.ctx, run.cloud, run.glance, run.group, run.tag
	provider := devcloudProvider(t, ctx, run.cloudsFile)
	lbc, err := gcopenstack.NewLoadBalancerV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	network, err := gcopenstack.NewNetworkV2(provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}

	// The images go when the test ends, after the daemon has stopped: an
	// image deleted under a running daemon would start a rollout.
	var published []string
	t.Cleanup(func() {
		for _, id := range published {
			_ = images.Delete(context.Background(), glance, id).ExtractErr()
		}
	})
	publish := func() string {
		t.Helper()
		id, _ := publishImageTimed(t, ctx, glance, run.image)
		published = append(published, id)
		return id
	}

	pool := createPool(t, ctx, lbc, network, group)
	foreign, err := pools.CreateMember(ctx, lbc, pool.ID, pools.CreateMemberOpts{Name: "other-app", Address: "127.1.250.19",
		ProtocolPort: 18080, Tags: []string{"other-app"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitLB(t, ctx, lbc, pool.Loadbalancers[0].ID)

	health := startBadImageHealth(t, ctx, cloud, tag)
	imageA := publish()
	health.vouch(imageA)

	cfg := run.config(t, fmt.Sprintf(`
    count: 3
    rollout: {max_surge: 1, max_unavailable: 0, min_ready: 1s, max_failures: %d, progress_deadline: %s}
    health:
      http: {port: %d, path: /healthz}
      interval: 2s
      timeout: 2s
      healthy_threshold: 2
      unhealthy_threshold: 3
      grace: 20s
    traffic:
      octavia: {pool: %s, protocol_port: 18080, subnet: phoenix-subnet, drain: 2s}
`, badImageFailures, badImageDeadline, health.port, pool.ID))
	badImageController(t, cfg, fmt.Sprintf("controller: {interval: %s}\n", badImageInterval))

	m := startDevcloudMonitor(t, ctx, run.cloudsFile, "devcloud", watchedGroup{Name: group, Count: 3, Surge: 1,
		HealthPort: health.port, HealthPath: "/healthz", Pool: pool.ID, Foreign: []pools.Member{*foreign}})
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info")

	// 1. Converged on image A, in Nova and in the pool.
	waitFor(t, 5*time.Minute, "the group to converge on image A", func() bool {
		return groupAtRest(d.status(t), imageA) && onNova(t, ctx, cloud, tag, 3, imageA)
	})
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 3, imageA, group)
	assertPool(t, ctx, lbc, pool.ID, first, *foreign)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("converged on image A %s in %v", imageA, time.Since(began).Round(time.Second))

	// 2. Image B, whose servers never pass their check: halted within the
	// failure budget, image A serving throughout.
	watch := startBadImageWatch(t, ctx, cloud, lbc, tag, pool.ID, first, 3+1) // count + max_surge
	waitNextSecond()                                                          // Glance's created_at has second precision
	imageB := publish()
	publishedB := time.Now()
	var halted string
	bound := badImageInterval + badImageFailures*(badImageDeadline+badImageSlack)
	waitFor(t, bound+2*time.Minute, "the rollout to image B to halt", func() bool {
		st := d.status(t)
		if len(st.Groups) == 1 && st.Groups[0].Halted != "" {
			halted = st.Groups[0].Halted
			return true
		}
		return false
	})
	haltedAfter := time.Since(publishedB)
	t.Logf("halted %.1fs after image B %s was published: %s", haltedAfter.Seconds(), imageB, halted)
	// The image watch finds B within an interval; each failed boot takes
	// its deadline and the slack.
	if haltedAfter > bound {
		t.Errorf("the rollout halted %.1fs after image B was published, want within %v (interval + max_failures × (progress_deadline + %v))",
			haltedAfter.Seconds(), bound, badImageSlack)
	}
	if !strings.Contains(halted, imageB) || !strings.Contains(halted, "failure budget") {
		t.Errorf("the halt %q does not name image B %s and its failure budget", halted, imageB)
	}

	// The failed servers of B go, A's stay; the halt is recorded on them,
	// the daemon logs it and announces it.
	waitCloud(t, 2*time.Minute, "the failed servers of image B to be deleted", func() bool {
		return onNova(t, ctx, cloud, tag, 3, imageA)
	})
	now := groupServers(t, ctx, cloud, tag)
	assertGroup(t, now, 3, imageA, group)
	for _, s := range now {
		if !slices.ContainsFunc(first, func(f provisioner.Server) bool { return f.ID == s.ID }) {
			t.Errorf("server %s is not one of image A's first three", s.Name)
		}
		if want := imageB + "@" + s.Metadata[controller.MetaRevision]; s.Metadata[controller.MetaHalted] != want {
			t.Errorf("server %s records the halt %q, want %q", s.Name, s.Metadata[controller.MetaHalted], want)
		}
	}
	assertPool(t, ctx, lbc, pool.ID, first, *foreign)
	if !slices.ContainsFunc(strings.Split(d.read(t, d.stdout), "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 3 && f[1] == group && f[2] == controller.EventHalted && strings.Contains(l, short(imageB)) &&
			strings.Contains(l, "3 old servers keep serving")
	}) {
		t.Errorf("the daemon's output announces no halt of image B with three old servers serving:\n%s", d.read(t, d.stdout))
	}
	if len(d.logLines("rollout halted")) == 0 {
		t.Error(`the daemon's log says nothing of "rollout halted"`)
	}

	// It stays halted: two more rounds look at it and create nothing.
	at := d.status(t).Groups[0].LastReconcile
	rounds := 0
	waitFor(t, 2*time.Minute, "two more rounds of the halted group", func() bool {
		g := d.status(t).Groups[0]
		if g.LastReconcile.After(at) {
			at, rounds = g.LastReconcile, rounds+1
			if g.Halted == "" {
				t.Fatalf("the halt lifted by itself: %+v", g)
			}
		}
		return rounds >= 2
	})
	bad, most := watch.stop(t)
	t.Logf("image B: %d server(s) booted, at most %d servers of the group at once", len(bad), most)
	if len(bad) != badImageFailures {
		t.Errorf("%d servers of image B were created, want exactly max_failures %d (one at a time, none after the halt)", len(bad), badImageFailures)
	}

	// 3. Image C, fixed: the halt lifts and the group converges on it.
	waitNextSecond()
	imageC := publish()
	health.vouch(imageC)
	publishedC := time.Now()
	waitFor(t, 6*time.Minute, "the group to converge on image C", func() bool {
		return groupAtRest(d.status(t), imageC) && onNova(t, ctx, cloud, tag, 3, imageC)
	})
	t.Logf("converged on image C %s %.1fs after its publication", imageC, time.Since(publishedC).Seconds())
	final := groupServers(t, ctx, cloud, tag)
	assertGroup(t, final, 3, imageC, group)
	assertPool(t, ctx, lbc, pool.ID, final, *foreign)
	m.Check(t)
	t.Logf("%v in all", time.Since(began).Round(time.Second))
}

// badImageController puts the controller section into the run's
// configuration file.
func badImageController(t *testing.T, cfg, section string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "cloud: devcloud\n", "cloud: devcloud\n"+section, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitCloud waits for cond, a look at the cloud, asked every half second:
// the cloud is shared with other tests, so it is not asked as often as
// waitFor asks a daemon.
func waitCloud(t *testing.T, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		time.Sleep(500 * time.Millisecond) // polling the cloud
	}
}

// badImageHealth is the health endpoint of the group's servers: the fake
// virt driver runs nothing, so the test answers for every server on a port
// of its own (Linux delivers a connection to any 127/8 address to a
// listener on 0.0.0.0, and the address dialled is the server's). A server
// is healthy only when Nova says it runs an image the test vouched for;
// any other image, and an address Nova does not show for the group yet,
// answer 503. The image a server runs never changes, so a server of the
// bad image can never be seen healthy.
type badImageHealth struct {
	cloud *openstack.Cloud
	tag   string
	port  int

	mu     sync.Mutex
	good   map[string]bool   // image IDs vouched for
	images map[string]string // address on phoenix-net → image, from the last list
	listed time.Time         // when the last list that succeeded began
	// listing is closed when the list under way ends; nil when none is.
	listing chan struct{}

	// What it saw, for the log: each address's server and probes, and
	// the lists.
	servers             map[string]provisioner.Server
	probes              map[string]*probeLog
	lists, listFailures int
	slowestList         time.Duration
}

type probeLog struct {
	first, firstOK time.Time
	failed         int // answers 503 before the first 200
}

// startBadImageHealth listens on a free port of 0.0.0.0 until the test
// ends; the daemon, stopped before (its cleanup runs first), never sees
// the endpoint go.
func startBadImageHealth(t *testing.T, ctx context.Context, cloud *openstack.Cloud, tag string) *badImageHealth {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &badImageHealth{cloud: cloud, tag: tag, port: ln.Addr().(*net.TCPAddr).Port, good: map[string]bool{}, images: map[string]string{},
		servers: map[string]provisioner.Server{}, probes: map[string]*probeLog{}}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		for _, l := range h.report() {
			t.Log(l)
		}
	})
	return h
}

// vouch makes the servers of an image healthy.
func (h *badImageHealth) vouch(image string) {
	h.mu.Lock()
	h.good[image] = true
	h.mu.Unlock()
}

func (h *badImageHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, _ := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if addr == nil {
		http.Error(w, "no local address", http.StatusInternalServerError)
		return
	}
	arrived := time.Now()
	ok := h.healthy(r.Context(), addr.IP.String(), arrived)
	h.mu.Lock()
	p := h.probes[addr.IP.String()]
	if p == nil {
		p = &probeLog{first: arrived}
		h.probes[addr.IP.String()] = p
	}
	switch {
	case ok && p.firstOK.IsZero():
		p.firstOK = arrived
	case !ok && p.firstOK.IsZero():
		p.failed++
	}
	h.mu.Unlock()
	if ok {
		_, _ = fmt.Fprintln(w, "ok")
		return
	}
	http.Error(w, "unhealthy "+addr.IP.String(), http.StatusServiceUnavailable)
}

// report says, for each server it answered for, when it was created,
// became ACTIVE, was first probed and first answered healthy, and how its
// lists of Nova went.
func (h *badImageHealth) report() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []string{fmt.Sprintf("health responder: %d lists of the group (%d failed), the slowest %v", h.lists, h.listFailures, h.slowestList.Round(time.Millisecond))}
	since := func(t, from time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("+%.1fs", t.Sub(from).Seconds())
	}
	for addr, p := range h.probes {
		s := h.servers[addr]
		out = append(out, fmt.Sprintf("  %s %s image %s: created %s, ACTIVE %s, first probe %s, first 200 %s after %d × 503",
			addr, s.Name, short(s.ImageID), s.Created.Format("15:04:05"), since(s.LaunchedAt, s.Created), since(p.first, s.Created), since(p.firstOK, s.Created), p.failed))
	}
	slices.Sort(out[1:])
	return out
}

// healthy answers from the last list of the group when it shows the
// address on a vouched image. Otherwise the next list decides: that of an
// address not listed yet (a server just ACTIVE), and that of an address
// listed on an image not vouched for once the last list is a second old
// (the probes of a booting server come several times a second). A list a
// second old is renewed in the background too, so an address whose server
// was deleted leaves the map long before a new server could take the
// address and boot.
func (h *badImageHealth) healthy(ctx context.Context, addr string, arrived time.Time) bool {
	h.mu.Lock()
	img, known := h.images[addr]
	good, stale := h.good[img], arrived.Sub(h.listed) > time.Second
	next := h.listing
	if next == nil && (stale || !known) {
		next = h.list(ctx)
	}
	h.mu.Unlock()
	switch {
	case known && good:
		return true
	case known && !stale:
		return false
	}
	wait := time.NewTimer(1500 * time.Millisecond) // under the probe's timeout
	defer wait.Stop()
	select {
	case <-next:
	case <-wait.C:
		return false
	case <-ctx.Done():
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	img, known = h.images[addr]
	return known && h.good[img]
}

// list begins a list of the group's servers, with h.mu held, and returns
// a channel closed when it ends. The list outlives a probe that gave up
// waiting for it (another waits for it too).
func (h *badImageHealth) list(ctx context.Context) chan struct{} {
	ch, began := make(chan struct{}), time.Now()
	h.listing = ch
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		list, err := h.cloud.ListServers(ctx, h.tag)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.lists++
		h.slowestList = max(h.slowestList, time.Since(began))
		if err != nil {
			h.listFailures++
		} else {
			h.images = map[string]string{}
			for _, s := range list {
				if addrs := s.Addresses["phoenix-net"]; !s.Gone() && len(addrs) > 0 {
					h.images[addrs[0]] = s.ImageID
					h.servers[addrs[0]] = s
				}
			}
			h.listed = began
		}
		h.listing = nil
		close(ch)
	}()
	return ch
}

// badImageWatch samples Nova and Octavia every two seconds while image B
// rolls out: the servers of image A stay ACTIVE and members of the pool
// with a weight above 0, no server of another image is a member, and the
// group never holds more than its ceiling.
type badImageWatch struct {
	stopc, done chan struct{}
	bad         map[string]bool // servers not of image A seen, by ID
	most        int             // the most servers of the group at once
	problems    []string        // the first of each kind
	kinds       map[string]bool
}

func startBadImageWatch(t *testing.T, ctx context.Context, cloud *openstack.Cloud, lbc *gophercloud.ServiceClient, tag, poolID string,
	old []provisioner.Server, ceiling int) *badImageWatch {
	t.Helper()
	w := &badImageWatch{stopc: make(chan struct{}), done: make(chan struct{}), bad: map[string]bool{}, kinds: map[string]bool{}}
	go func() {
		defer close(w.done)
		for {
			w.sample(ctx, cloud, lbc, tag, poolID, old, ceiling)
			select {
			case <-w.stopc:
				return
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second): // the sampling period
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *badImageWatch) sample(ctx context.Context, cloud *openstack.Cloud, lbc *gophercloud.ServiceClient, tag, poolID string,
	old []provisioner.Server, ceiling int) {
	pages, err := pools.ListMembers(lbc, poolID, nil).AllPages(ctx)
	if err != nil {
		return // a transient error of the cloud: skip the sample
	}
	members, err := pools.ExtractMembers(pages)
	if err != nil {
		return
	}
	list, err := cloud.ListServers(ctx, tag)
	if err != nil {
		return
	}
	weight := map[string]int{} // address → weight; -1 when down
	for _, m := range members {
		weight[m.Address] = m.Weight
		if !m.AdminStateUp {
			weight[m.Address] = -1
		}
	}
	n := 0
	for _, s := range list {
		if s.Gone() {
			continue
		}
		n++
		if slices.ContainsFunc(old, func(o provisioner.Server) bool { return o.ID == s.ID }) {
			continue
		}
		w.bad[s.ID] = true
		for _, a := range s.Addresses["phoenix-net"] {
			if _, in := weight[a]; in {
				w.problem("bad-member", "server %s (%s) of image %s is a member of the pool, weight %d", s.Name, a, s.ImageID, weight[a])
			}
		}
	}
	w.most = max(w.most, n)
	if n > ceiling {
		w.problem("bound", "%d servers in the group, above count + max_surge %d", n, ceiling)
	}
	for _, o := range old {
		i := slices.IndexFunc(list, func(s provisioner.Server) bool { return s.ID == o.ID })
		switch {
		case i < 0 || list[i].Gone():
			w.problem("old-gone", "server %s of image A is gone", o.Name)
		case list[i].Status != provisioner.StatusActive || list[i].TaskState != "" || list[i].Metadata[controller.MetaPhase] != "":
			w.problem("old-state", "server %s of image A is %s (task %q, phase %q)", o.Name, list[i].Status, list[i].TaskState, list[i].Metadata[controller.MetaPhase])
		}
		if a := o.Addresses["phoenix-net"][0]; weight[a] <= 0 {
			w.problem("old-member", "server %s (%s) of image A is no member of the pool with a weight above 0 (weight %d)", o.Name, a, weight[a])
		}
	}
}

func (w *badImageWatch) problem(kind, format string, args ...any) {
	if !w.kinds[kind] {
		w.kinds[kind] = true
		w.problems = append(w.problems, fmt.Sprintf("%s at %s", fmt.Sprintf(format, args...), time.Now().Format("15:04:05.000")))
	}
}

func (w *badImageWatch) halt() {
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.done
}

// stop ends the sampling, fails the test for each kind of problem seen,
// and returns the servers not of image A it saw and the most servers of
// the group at once.
func (w *badImageWatch) stop(t *testing.T) (bad []string, most int) {
	t.Helper()
	w.halt()
	for _, p := range w.problems {
		t.Errorf("while image B rolled out: %s", p)
	}
	for id := range w.bad {
		bad = append(bad, id)
	}
	return bad, w.most
}
