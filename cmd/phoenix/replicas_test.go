package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/coordination/etcdtest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// The lease of the replicas in this test: etcd's shortest.
const replicaTTL = 2 * time.Second

// replicaPoll is how often a replica looks at the owners (a third of the
// lease).
const replicaPoll = replicaTTL / 3

func replicaConfig(secretFile string, endpoints []string, groups ...string) string {
	return fmt.Sprintf(`cloud: phoenix-sim
controller:
  interval: 1h
  listen: "127.0.0.1:0"
  webhook_secret_file: %s
  coordination:
    etcd: {endpoints: [%s], prefix: /phoenix-test/, lease_ttl: %s}
groups:
%s`, secretFile, strings.Join(endpoints, ", "), replicaTTL, strings.Join(groups, ""))
}

// servers remembers the group of every server the simulator ever held,
// to put each request naming a server to its group after it is gone.
type serverIndex struct {
	mu sync.Mutex
	by map[string]string
}

func (ix *serverIndex) sample(s *sim.Sim) {
	servers := s.Servers()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, srv := range servers {
		if g := groupOfServer(srv); g != "" {
			ix.by[srv.ID] = g
		}
	}
}

func (ix *serverIndex) group(id string) string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.by[id]
}

var serverInPath = regexp.MustCompile(`/servers/([^/]+)`)

// change is one request that changed something in the cloud.
type change struct {
	at      time.Time
	replica string
	group   string // "" for a create, whose body the log does not keep
	what    string
}

func changesOf(t *testing.T, requests []sim.Request, ix *serverIndex) []change {
	t.Helper()
	var out []change
	for _, r := range requests {
		if r.Method == http.MethodGet || r.Service == "identity" || r.Status == 0 {
			continue
		}
		c := change{at: r.Time, what: r.Method + " " + r.Path}
		for _, f := range strings.Fields(r.UserAgent) {
			if id, ok := strings.CutPrefix(f, "phoenix-replica/"); ok {
				c.replica = id
			}
		}
		if c.replica == "" {
			t.Errorf("%s came without a replica in its User-Agent %q", c.what, r.UserAgent)
		}
		if m := serverInPath.FindStringSubmatch(r.Path); m != nil {
			c.group = ix.group(m[1])
		}
		out = append(out, c)
	}
	return out
}

// Three phoenix daemons share three groups through a three-member etcd
// cluster, and the test does to them what production will: kills a
// replica mid-rollout, cuts one off from etcd, kills an etcd member, takes
// quorum away and gives it back, adds a replica and stops one with
// SIGTERM. Throughout, every group keeps its
// capacity and its surge bound, and each group's changes come from one
// replica per lease term.
func TestReplicasShareGroupsThroughEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three daemons and an etcd cluster")
	}
	bin := buildPhoenix(t)
	env := simtest.Start(t, sim.Options{BootTime: sim.LogNormal(100*time.Millisecond, 400*time.Millisecond), HealthDelay: sim.Fixed(20 * time.Millisecond)}, 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	etcd := etcdtest.Start(t, 3)
	proxy := etcdtest.NewProxy(t, etcd.Endpoint(0))

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "webhook.key")
	secret := []byte("s3cret-for-the-replicas-0123456789")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{"web": 4, "api": 2, "worker": 2}
	groups := []string{"api", "web", "worker"}
	var gyaml []string
	for _, g := range groups {
		gyaml = append(gyaml, daemonGroupYAML(g, counts[g]))
	}
	direct := filepath.Join(dir, "direct.yaml")
	proxied := filepath.Join(dir, "proxied.yaml")
	for file, eps := range map[string][]string{direct: etcd.Endpoints(), proxied: {proxy.URL()}} {
		if err := os.WriteFile(file, []byte(replicaConfig(secretFile, eps, gyaml...)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ix := &serverIndex{by: map[string]string{}}
	stopIndex := make(chan struct{})
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		for {
			ix.sample(env.Sim)
			select {
			case <-stopIndex:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stopIndex); <-indexDone }()

	procs := map[string]*daemonProc{
		"r0": startDaemonProc(t, bin, direct, env.CloudsFile, "--replica-id", "r0"),
		"r1": startDaemonProc(t, bin, direct, env.CloudsFile, "--replica-id", "r1"),
		// r2 reaches etcd only through the proxy, that the test cuts.
		"r2": startDaemonProc(t, bin, proxied, env.CloudsFile, "--replica-id", "r2"),
	}
	live := []string{"r0", "r1", "r2"}

	// owners reads who owns each group from the live replicas; ok when
	// they agree, every group has an owner, and each owner reconciles
	// its groups with image (any when "") without error.
	owners := func(image string) (map[string]string, bool) {
		agreed := map[string]string{}
		for _, id := range live {
			st := procs[id].status(t)
			if st.Replica == nil || st.Replica.ID != id || len(st.Groups) != len(groups) {
				return nil, false
			}
			for _, g := range st.Groups {
				if g.Owner == "" || (agreed[g.Group] != "" && agreed[g.Group] != g.Owner) {
					return nil, false
				}
				agreed[g.Group] = g.Owner
				if g.Owner == id && (g.InProgress || g.LastError != "" || (image != "" && g.DesiredImage.ID != image)) {
					return nil, false
				}
			}
		}
		return agreed, true
	}
	onImage := func(image string) bool {
		n := map[string]int{}
		for _, s := range env.Sim.Servers() {
			if s.ImageID != image || !s.Healthy {
				return false
			}
			n[groupOfServer(s)]++
		}
		for g, c := range counts {
			if n[g] != c {
				return false
			}
		}
		return true
	}
	converge := func(image string) map[string]string {
		t.Helper()
		var own map[string]string
		waitFor(t, 90*time.Second, "every group on image "+image+", each owned by one live replica", func() bool {
			var ok bool
			own, ok = owners(image)
			return ok && onImage(image)
		})
		return own
	}
	publish := func(to ...string) sim.Image {
		img := env.Sim.AddImage(sim.Image{Name: "gold"})
		for _, id := range to {
			if code := send(t, procs[id].url, secret, trigger.Event{ID: "img-" + img.ID + "-" + id, Type: trigger.TypeImagePublished}); code != http.StatusAccepted {
				t.Fatalf("image.published to %s: HTTP %d", id, code)
			}
		}
		return img
	}
	rolling := func(image string, inGroups ...string) {
		t.Helper()
		waitFor(t, 30*time.Second, "a rollout to "+image+" under way in "+strings.Join(inGroups, ","), func() bool {
			for _, s := range env.Sim.Servers() {
				if s.ImageID == image && slices.Contains(inGroups, groupOfServer(s)) {
					return true
				}
			}
			return false
		})
	}
	first := converge(gold.ID)
	t.Logf("owners after the start: %v", first)
	// The first build is done by whichever replicas held the groups while
	// the others started (the first one up holds them all for a moment):
	// a group may have had two owners by then. Terms are judged from here.
	env.Sim.ResetRequests()
	mon := env.Sim.Monitor(2*time.Millisecond, groupOfServer)

	// (1) A replica dies mid-rollout: its groups move within the lease
	// and one poll, and the rollout completes.
	img1 := publish(live...)
	victim := first["web"]
	if victim == "r2" {
		// r2 is kept for the cut below.
		victim = first[otherGroup(first, "r2")]
	}
	victimGroups := groupsOf(first, victim)
	keys := watchKeys(t, etcd.Endpoints(), "/phoenix-test/groups/")
	rolling(img1.ID, victimGroups...)
	killed := time.Now()
	_ = procs[victim].cmd.Process.Kill()
	<-procs[victim].done
	live = slices.DeleteFunc(live, func(id string) bool { return id == victim })
	waitFor(t, replicaTTL+replicaPoll+5*time.Second, "the dead replica's groups taken over", func() bool {
		own := ownersLoose(t, procs, live)
		for _, g := range victimGroups {
			if o := own[g]; o == "" || o == victim {
				return false
			}
		}
		return true
	})
	took := time.Since(killed)
	// Two parts: etcd expires the dead replica's lease (its keys go),
	// then a live replica claims the group. The first is etcd's (its
	// expiry sweep runs every 500ms, later on a loaded machine); the
	// second is Phoenix's, and quick since replicas watch the prefix.
	for _, g := range victimGroups {
		gone, claimed := keys.handover("/phoenix-test/groups/"+g, victim)
		t.Logf("%s killed; etcd deleted the key of %s %s later, another replica claimed it %s after that (lease %s, poll %s), seen in its status %s after the kill",
			victim, g, gone.Sub(killed), claimed.Sub(gone), replicaTTL, replicaPoll, took)
		if gone.IsZero() || claimed.IsZero() {
			t.Errorf("no handover of %s in etcd: deleted at %s, claimed at %s", g, gone, claimed)
			continue
		}
		if d := gone.Sub(killed); d > replicaTTL+2*time.Second {
			t.Errorf("etcd expired the dead replica's key of %s %s after the kill, want within the lease %s (and 2s of slack)", g, d, replicaTTL)
		}
		if d := claimed.Sub(gone); d > replicaPoll+time.Second {
			t.Errorf("group %s was claimed %s after its key went, want within a poll %s (and 1s of slack)", g, d, replicaPoll)
		}
	}
	second := converge(img1.ID)

	// (2) r2 is cut off from etcd mid-rollout: it stops changing anything
	// before the other replica takes its groups, and says so.
	img2 := publish(live...)
	cutGroups := groupsOf(second, "r2")
	if len(cutGroups) == 0 {
		t.Fatalf("r2 owns nothing: %v", second)
	}
	rolling(img2.ID, cutGroups...)
	cut := time.Now()
	proxy.Cut()
	waitFor(t, 2*replicaTTL+time.Second, "r2 to say it is fenced", func() bool {
		st := procs["r2"].status(t)
		return st.Replica != nil && st.Replica.Fenced != "" && st.Ready != "ok"
	})
	other := live[0]
	if other == "r2" {
		other = live[1]
	}
	live = []string{other}
	third := converge(img2.ID)
	for _, g := range cutGroups {
		if third[g] != other {
			t.Errorf("group %s is owned by %q after r2 was cut, want %s", g, third[g], other)
		}
	}
	ix.sample(env.Sim)
	var lastR2, firstTakeover time.Time
	for _, c := range changesOf(t, env.Sim.Requests(), ix) {
		if c.replica == "r2" {
			lastR2 = c.at
		}
		if c.replica == other && slices.Contains(cutGroups, c.group) && c.at.After(cut) && firstTakeover.IsZero() {
			firstTakeover = c.at
		}
	}
	t.Logf("r2 cut at %s; its last change %s after; %s's first change to its groups %s after",
		cut.Format(time.StampMilli), lastR2.Sub(cut), other, firstTakeover.Sub(cut))
	if !lastR2.IsZero() && lastR2.After(cut.Add(replicaTTL)) {
		t.Errorf("r2 changed the cloud %s after it was cut off, beyond its lease of %s", lastR2.Sub(cut), replicaTTL)
	}
	if firstTakeover.IsZero() || (!lastR2.IsZero() && !lastR2.Before(firstTakeover)) {
		t.Errorf("r2's last change at %s, %s's first change to r2's groups at %s: r2 did not stop first", lastR2, other, firstTakeover)
	}

	// (3) An etcd member dies mid-rollout (the leader, the worst one):
	// nothing an operator sees changes.
	img3 := publish(live...)
	rolling(img3.ID, groups...)
	var leader int
	waitFor(t, 10*time.Second, "etcd to have a leader", func() bool { leader = etcd.Leader(); return leader >= 0 })
	etcd.Stop(leader)
	if after := converge(img3.ID); fmt.Sprint(after) != fmt.Sprint(third) {
		t.Errorf("owners moved from %v to %v when an etcd member died", third, after)
	}

	// (4) A second member goes: no quorum. Every replica stops changing
	// the cloud and says so, until quorum returns; then the rollout
	// completes with the same owner.
	img4 := publish(live...)
	rolling(img4.ID, groups...)
	var down int
	for i := range 3 {
		if i != leader {
			down = i
			break
		}
	}
	lost := time.Now()
	etcd.Stop(down)
	waitFor(t, 2*replicaTTL+time.Second, other+" to say it is fenced without quorum", func() bool {
		st := procs[other].status(t)
		return st.Replica != nil && st.Replica.Fenced != ""
	})
	// Watch the cloud for a while without quorum: the steps that passed
	// their check before quorum went may finish, nothing starts after.
	quiet := lost.Add(replicaTTL)
	waitFor(t, 2*replicaTTL+time.Second, "the time without quorum to pass", func() bool { return time.Now().After(quiet.Add(replicaTTL)) })
	for _, c := range changesOf(t, env.Sim.Requests(), ix) {
		if c.at.After(quiet) {
			t.Errorf("without quorum, %s sent %s at %s after quorum was lost", c.replica, c.what, c.at.Sub(lost))
		}
	}
	if st := procs[other].status(t); st.Replica == nil || st.Replica.Fenced == "" {
		t.Errorf("%s does not say it is fenced while etcd has no quorum: %+v", other, st.Replica)
	}
	etcd.Restart(down)
	etcd.Restart(leader)
	if after := converge(img4.ID); fmt.Sprint(after) != fmt.Sprint(third) {
		t.Errorf("owners moved from %v to %v across the loss of quorum", third, after)
	}

	// The invariants held through all of it.
	for g, e := range mon.Stop() {
		if e.MinHealthy < counts[g] || e.MaxTotal > counts[g]+2 {
			t.Errorf("group %s: healthy fell to %d (floor %d), total reached %d (ceiling %d)", g, e.MinHealthy, counts[g], e.MaxTotal, counts[g]+2)
		}
	}
	servers := env.Sim.Servers()
	if n := len(servers); n != 8 {
		t.Errorf("%d servers at the end, want 8: a duplicate or an orphan", n)
	}
	// Each group's changes came from one replica per lease term: once
	// another replica changed a group, the one before never did again.
	ix.sample(env.Sim)
	byGroup := map[string][]string{}
	for _, c := range changesOf(t, env.Sim.Requests(), ix) {
		if c.group == "" {
			continue
		}
		if seq := byGroup[c.group]; len(seq) == 0 || seq[len(seq)-1] != c.replica {
			byGroup[c.group] = append(seq, c.replica)
		}
	}
	for g, terms := range byGroup {
		seen := map[string]bool{}
		for _, r := range terms {
			if seen[r] {
				t.Errorf("group %s was changed by replicas in the order %v: two acted in turn", g, terms)
				break
			}
			seen[r] = true
		}
		t.Logf("group %s changed by, in turn: %v", g, terms)
	}

	// (5) A new replica joins and gets its share; then the old one is
	// stopped with SIGTERM: it gives its groups up as it exits, and the
	// new one has them all at once, without waiting for a lease to end.
	procs["r3"] = startDaemonProc(t, bin, direct, env.CloudsFile, "--replica-id", "r3")
	live = append(live, "r3")
	waitFor(t, 30*time.Second, "r3 to take its share", func() bool {
		own, ok := owners("")
		return ok && len(groupsOf(own, "r3")) > 0 && len(groupsOf(own, other)) > 0
	})
	procs[other].stop(t, syscall.SIGTERM)
	exited := time.Now()
	live = []string{"r3"}
	waitFor(t, 10*time.Second, "r3 to hold every group", func() bool { return len(ownersLoose(t, procs, live)) == len(groups) })
	if took := time.Since(exited); took > replicaTTL/2 {
		t.Errorf("r3 held every group %s after %s exited: its lease was not given up (lease %s)", took, other, replicaTTL)
	} else {
		t.Logf("r3 held every group %s after %s exited on SIGTERM", took, other)
	}
	procs["r3"].stop(t, syscall.SIGTERM)
}

// keyLog records the changes of the keys under a prefix, as seen by a
// watch of the test's own.
type keyLog struct {
	mu     sync.Mutex
	events []keyEvent
}

type keyEvent struct {
	at     time.Time
	key    string
	value  string
	delete bool
}

func watchKeys(t *testing.T, endpoints []string, prefix string) *keyLog {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kl := &keyLog{}
	done := make(chan struct{})
	wc := cli.Watch(ctx, prefix, clientv3.WithPrefix())
	go func() {
		defer close(done)
		for resp := range wc {
			now := time.Now()
			kl.mu.Lock()
			for _, ev := range resp.Events {
				kl.events = append(kl.events, keyEvent{at: now, key: string(ev.Kv.Key), value: string(ev.Kv.Value), delete: ev.Type == clientv3.EventTypeDelete})
			}
			kl.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = cli.Close() })
	return kl
}

// handover finds when key was deleted after holding from's id, and when
// it was next created.
func (kl *keyLog) handover(key, from string) (gone, claimed time.Time) {
	kl.mu.Lock()
	defer kl.mu.Unlock()
	for _, ev := range kl.events {
		switch {
		case ev.key != key:
		case ev.delete && gone.IsZero():
			gone = ev.at
		case !ev.delete && !gone.IsZero() && ev.value != from && claimed.IsZero():
			claimed = ev.at
		}
	}
	return gone, claimed
}

// ownersLoose reads the groups each live replica says it runs itself.
func ownersLoose(t *testing.T, procs map[string]*daemonProc, live []string) map[string]string {
	t.Helper()
	own := map[string]string{}
	for _, id := range live {
		st := procs[id].status(t)
		for _, g := range st.Groups {
			// A replica is sure only of the groups it runs itself.
			if g.Owner == id {
				own[g.Group] = id
			}
		}
	}
	return own
}

func groupsOf(owners map[string]string, replica string) []string {
	var out []string
	for g, r := range owners {
		if r == replica {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

func otherGroup(owners map[string]string, not string) string {
	for _, g := range []string{"api", "web", "worker"} {
		if owners[g] != not {
			return g
		}
	}
	return ""
}
