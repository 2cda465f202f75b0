package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/coordination"
	"github.com/phoenix-ops/phoenix/controller/coordination/etcdtest"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// replica is one coordinated daemon with its own connection to the
// simulator, whose requests carry its id in their User-Agent.
type replica struct {
	id  string
	d   *daemon.Daemon
	reg *prometheus.Registry
	// stop ends the daemon and gives its groups up (as a clean stop
	// does); the cleanup calls it again harmlessly.
	stop func()
}

func startReplica(t *testing.T, env *simtest.Env, etcd []string, id, yaml string) *replica {
	t.Helper()
	cfg, err := config.Parse("daemon.yaml", []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: simtest.CloudName, CloudsFile: env.CloudsFile, Retry: simtest.FastRetry,
		LBWait: simtest.FastLBWait, Logger: grouptest.Logger(t), UserAgent: "phoenix-replica/" + id})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := coordination.New(coordination.Options{ReplicaID: id, Endpoints: etcd, LeaseTTL: 2 * time.Second, Log: grouptest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := daemon.NewMetrics(reg)
	d := daemon.New(cloud.Services(), cfg, daemon.Options{Log: grouptest.Logger(t), Metrics: m, PollInterval: 50 * time.Millisecond,
		Reconciler: grouptest.FastOptions(), Coordinator: rep})
	m.Watch(d)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(runCtx)
	}()
	var once sync.Once
	end := func() {
		once.Do(func() {
			stop()
			<-done
			cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer ccancel()
			_ = rep.Close(cctx)
		})
	}
	t.Cleanup(end)
	return &replica{id: id, d: d, reg: reg, stop: end}
}

// serverGroups remembers the group of every server the simulator ever
// held, so that requests naming a server id can be put to its group even
// after the server is gone.
type serverGroups struct {
	mu sync.Mutex
	by map[string]string
}

func watchServers(t *testing.T, s *sim.Sim) *serverGroups {
	sg := &serverGroups{by: map[string]string{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			sg.sample(s)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return sg
}

func (sg *serverGroups) sample(s *sim.Sim) {
	servers := s.Servers()
	sg.mu.Lock()
	defer sg.mu.Unlock()
	for _, srv := range servers {
		if g := grouptest.GroupOf(srv); g != "" {
			sg.by[srv.ID] = g
		}
	}
}

func (sg *serverGroups) group(id string) string {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	return sg.by[id]
}

var serverPath = regexp.MustCompile(`/servers/([^/]+)`)

// replicaOf reads the replica id out of a request's User-Agent.
func replicaOf(ua string) string {
	for _, f := range strings.Fields(ua) {
		if id, ok := strings.CutPrefix(f, "phoenix-replica/"); ok {
			return id
		}
	}
	return ""
}

// Three daemons share three groups through etcd: each group is owned by
// one of them, every group converges, and every change the simulator
// received for a group came from its owner.
func TestReplicasShareTheGroups(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(901), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	etcd := etcdtest.Start(t, 1)
	sg := watchServers(t, env.Sim)
	mon := env.Sim.Monitor(5*time.Millisecond, grouptest.GroupOf)
	yaml := daemonYAML(
		daemonGroup("web", "gold", "m1.small", 3, ""),
		daemonGroup("worker", "gold", "m1.small", 2, ""),
		daemonGroup("api", "gold", "m1.small", 2, ""))
	var replicas []*replica
	for i := range 3 {
		replicas = append(replicas, startReplica(t, env, etcd.Endpoints(), fmt.Sprintf("r%d", i), yaml))
	}
	groups := []string{"api", "web", "worker"}

	// owners is the owner each replica's status names for each group,
	// when they all agree and each group has one.
	owners := func() (map[string]string, bool) {
		agreed := map[string]string{}
		for _, r := range replicas {
			st := r.d.Status()
			if st.Replica == nil || st.Replica.ID != r.id || len(st.Groups) != len(groups) {
				return nil, false
			}
			for _, g := range st.Groups {
				if g.Owner == "" || (agreed[g.Group] != "" && agreed[g.Group] != g.Owner) {
					return nil, false
				}
				agreed[g.Group] = g.Owner
				if g.Owner == r.id && (g.InProgress || g.LastError != "") {
					return nil, false
				}
			}
		}
		return agreed, true
	}
	converged := func(image string) map[string]string {
		var own map[string]string
		grouptest.WaitUntil(t, 60*time.Second, "every group converged on "+image+" and owned by one replica", func() bool {
			var ok bool
			if own, ok = owners(); !ok {
				return false
			}
			n := map[string]int{}
			for _, srv := range env.Sim.Servers() {
				if srv.ImageID != image || !srv.Healthy {
					return false
				}
				n[grouptest.GroupOf(srv)]++
			}
			return n["web"] == 3 && n["worker"] == 2 && n["api"] == 2
		})
		return own
	}
	own := converged(gold.ID)
	perReplica := map[string]int{}
	for _, r := range own {
		perReplica[r]++
	}
	if len(perReplica) != 3 {
		t.Errorf("owners %v: three groups and three replicas, want one group each", own)
	}

	// While the replicas joined, groups moved (the first one claimed
	// everything, then shed): still, each group's changes came from one
	// replica at a time, never interleaved.
	sg.sample(env.Sim)
	for g, seq := range changesByGroup(t, env.Sim.Requests(), sg) {
		if handovers := terms(seq); len(handovers) != len(unique(handovers)) {
			t.Errorf("group %s was changed by replicas in the order %v: two acted in turn", g, handovers)
		}
	}

	// A new gold image: each owner rolls its group; the others do nothing.
	env.Sim.ResetRequests()
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	for _, r := range replicas {
		if err := r.d.Dispatch(context.Background(), trigger.Event{ID: "e1", Type: trigger.TypeImagePublished}); err != nil {
			t.Fatal(err)
		}
	}
	if after := converged(patched.ID); fmt.Sprint(after) != fmt.Sprint(own) {
		t.Errorf("owners moved from %v to %v while every replica lived", own, after)
	}
	sg.sample(env.Sim)
	requests := env.Sim.Requests()
	for _, g := range groups {
		seq := changesByGroup(t, requests, sg)[g]
		if terms := terms(seq); len(terms) != 1 || terms[0] != own[g] {
			t.Errorf("group %s (owner %s) was changed by %v", g, own[g], terms)
		}
	}
	// Every create came from the owner of a group, as many as its
	// group's servers (each replaced once).
	creates := map[string]int{}
	for _, r := range requests {
		if r.Service == "compute" && r.Method == "POST" && strings.HasSuffix(r.Path, "/servers") && r.Status != 0 {
			creates[replicaOf(r.UserAgent)]++
		}
	}
	for g, want := range map[string]int{"web": 3, "worker": 2, "api": 2} {
		if got := creates[own[g]]; got < want {
			t.Errorf("the owner of %s sent %d creates, want at least %d (%v)", g, got, want, creates)
		}
	}
	// Events go to every replica: each acts on the groups it owns and
	// accepts the rest; what no replica has is refused.
	var webServer string
	workerBefore := grouptest.IDsOf(env.Sim, "worker")
	for _, srv := range env.Sim.Servers() {
		if grouptest.GroupOf(srv) == "web" {
			webServer = srv.ID
		}
	}
	for _, r := range replicas {
		for _, e := range []trigger.Event{
			{ID: "p1", Type: trigger.TypeSecurityPatch, Groups: []string{"worker"}, Reason: "CVE-1"},
			{ID: "c1", Type: trigger.TypeInstanceCompromised, Server: webServer, Reason: "intrusion"},
		} {
			if err := r.d.Dispatch(context.Background(), e); err != nil {
				t.Errorf("replica %s refused %s: %v", r.id, e.Type, err)
			}
		}
		err := r.d.Dispatch(context.Background(), trigger.Event{ID: "p2", Type: trigger.TypeSecurityPatch, Groups: []string{"nope"}, Reason: "CVE-2"})
		if !errors.Is(err, trigger.ErrUnknownTarget) {
			t.Errorf("replica %s, a patch of a group no one has: %v", r.id, err)
		}
	}
	grouptest.WaitUntil(t, 60*time.Second, "the compromised server gone and worker rebuilt by its owner", func() bool {
		if _, ok := env.Sim.Server(webServer); ok {
			return false
		}
		for _, id := range grouptest.IDsOf(env.Sim, "worker") {
			if slices.Contains(workerBefore, id) {
				return false
			}
		}
		_, ok := owners()
		return ok && onImageCount(env.Sim, patched.ID, map[string]int{"web": 3, "worker": 2, "api": 2})
	})

	for g, e := range mon.Stop() {
		count := map[string]int{"web": 3, "worker": 2, "api": 2}[g]
		if e.MaxTotal > count+2 {
			t.Errorf("group %s reached %d servers, over count %d + max_surge 2", g, e.MaxTotal, count)
		}
	}

	// The metrics say who owns what: one replica with 1 for each group.
	for _, g := range groups {
		total := 0.0
		for _, r := range replicas {
			total += gaugeValue(t, r.reg, "phoenix_group_owned", map[string]string{"group": g})
		}
		if total != 1 {
			t.Errorf("phoenix_group_owned{group=%q} sums to %v over the replicas, want 1", g, total)
		}
	}
	if n := testutil.CollectAndCount(replicas[0].reg, "phoenix_replica_info"); n != 1 {
		t.Errorf("%d phoenix_replica_info series, want 1", n)
	}
}

// changesByGroup lists, per group, the replica of each compute request
// that changed one of the group's servers, in order.
func changesByGroup(t *testing.T, requests []sim.Request, sg *serverGroups) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range requests {
		if r.Service != "compute" || r.Method == "GET" || r.Status == 0 {
			continue
		}
		m := serverPath.FindStringSubmatch(r.Path)
		if m == nil {
			continue
		}
		who := replicaOf(r.UserAgent)
		if who == "" {
			t.Errorf("%s %s has no replica in its User-Agent %q", r.Method, r.Path, r.UserAgent)
		}
		g := sg.group(m[1])
		out[g] = append(out[g], who)
	}
	return out
}

// terms collapses runs of one replica: the owners in turn.
func terms(seq []string) []string {
	var out []string
	for _, r := range seq {
		if len(out) == 0 || out[len(out)-1] != r {
			out = append(out, r)
		}
	}
	return out
}

func unique(s []string) map[string]bool {
	out := map[string]bool{}
	for _, x := range s {
		out[x] = true
	}
	return out
}

// onImageCount says whether every server runs image, healthy, and the
// groups have these counts.
func onImageCount(s *sim.Sim, image string, counts map[string]int) bool {
	n := map[string]int{}
	for _, srv := range s.Servers() {
		if srv.ImageID != image || !srv.Healthy {
			return false
		}
		n[grouptest.GroupOf(srv)]++
	}
	for g, c := range counts {
		if n[g] != c {
			return false
		}
	}
	return true
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// A security patch reaches every replica, but the owner of the group may
// die before it does: the replica that takes the group over must still
// rebuild it. Here only the replica not owning the group gets the event,
// then the owner stops; the group's servers from before the patch are
// all replaced by the new owner.
func TestPatchAcceptedByANonOwnerIsDoneWhenItTakesTheGroupOver(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(930), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	etcd := etcdtest.Start(t, 1)
	yaml := daemonYAML(daemonGroup("web", "gold", "m1.small", 2, ""))
	replicas := []*replica{startReplica(t, env, etcd.Endpoints(), "r0", yaml), startReplica(t, env, etcd.Endpoints(), "r1", yaml)}
	var owner, other *replica
	grouptest.WaitUntil(t, 60*time.Second, "web converged and owned", func() bool {
		for i, r := range replicas {
			st := r.d.Status()
			if len(st.Groups) == 1 && st.Groups[0].Owner == r.id && !st.Groups[0].InProgress {
				owner, other = r, replicas[1-i]
			}
		}
		return owner != nil && onImageCount(env.Sim, gold.ID, map[string]int{"web": 2})
	})
	before := grouptest.IDsOf(env.Sim, "web")

	err := other.d.Dispatch(context.Background(), trigger.Event{ID: "p1", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-7"})
	if err != nil {
		t.Fatalf("replica %s, not the owner, refused the patch: %v", other.id, err)
	}
	owner.stop()
	grouptest.WaitUntil(t, 60*time.Second, "the new owner to rebuild every server of web from before the patch", func() bool {
		st := other.d.Status()
		if len(st.Groups) != 1 || st.Groups[0].Owner != other.id || !!st.Groups[0].InProgress {
			return false
		}
		now := grouptest.IDsOf(env.Sim, "web")
		for _, id := range now {
			if slices.Contains(before, id) {
				return false
			}
		}
		return len(now) == 2
	})
}
