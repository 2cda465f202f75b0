package coordination

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/phoenix-ops/phoenix/controller/coordination/etcdtest"
	"github.com/phoenix-ops/phoenix/provisioner"
)

const ttl = 2 * time.Second

// holders is what the workers of every replica run: the owned sets that
// apply handed over. It fails the test the moment two replicas hold one
// group.
type holders struct {
	t  *testing.T
	mu sync.Mutex
	by map[string]string // group → replica
	// claimedAt is when each replica first held each group.
	claimedAt map[string]map[string]time.Time
	// onApply, when set, sees each apply before it takes effect.
	onApply func(replica string, owned []string)
}

func newHolders(t *testing.T) *holders {
	return &holders{t: t, by: map[string]string{}, claimedAt: map[string]map[string]time.Time{}}
}

func (h *holders) apply(replica string) func([]string) {
	return func(owned []string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.onApply != nil {
			h.onApply(replica, owned)
		}
		for g, r := range h.by {
			if r == replica && !slices.Contains(owned, g) {
				delete(h.by, g)
			}
		}
		for _, g := range owned {
			if other, ok := h.by[g]; ok && other != replica {
				h.t.Errorf("group %s held by %s and %s at once", g, other, replica)
			}
			h.by[g] = replica
			if h.claimedAt[replica] == nil {
				h.claimedAt[replica] = map[string]time.Time{}
			}
			if _, ok := h.claimedAt[replica][g]; !ok {
				h.claimedAt[replica][g] = time.Now()
			}
		}
	}
}

// forget drops a replica that died: its workers are gone with it.
func (h *holders) forget(replica string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for g, r := range h.by {
		if r == replica {
			delete(h.by, g)
		}
	}
}

func (h *holders) count() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, r := range h.by {
		out[r]++
	}
	return out
}

func (h *holders) holder(g string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.by[g]
}

func groups(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("g%d", i))
	}
	return out
}

// start runs a replica's ownership loop until the test ends (or its
// context is cancelled).
func start(t *testing.T, id string, endpoints []string, gs []string, h *holders) (*Replica, context.CancelFunc) {
	t.Helper()
	return startWith(t, id, endpoints, func() []string { return gs }, h)
}

// startWith is start with a configuration that may change (a reload).
func startWith(t *testing.T, id string, endpoints []string, gs func() []string, h *holders) (*Replica, context.CancelFunc) {
	t.Helper()
	r, err := New(Options{ReplicaID: id, Endpoints: endpoints, LeaseTTL: ttl, Log: zaptest.NewLogger(t), DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx, gs, h.apply(id))
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		stop()
		h.forget(id) // its workers stop with its loop
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = r.Close(cctx)
	})
	return r, stop
}

// kill makes a replica vanish as a crash would: it stops renewing its
// lease and talking to etcd, and revokes nothing.
func kill(r *Replica, stop context.CancelFunc) {
	stop()
	r.closed.Do(func() {
		close(r.stop)
		<-r.done
		_ = r.cli.Close()
	})
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestGroupsAreSharedAndHeldByOneReplica(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	h := newHolders(t)
	gs := groups(6)
	start(t, "a", etcd.Endpoints(), gs, h)
	waitFor(t, 10*time.Second, "the only replica holds every group", func() bool { return h.count()["a"] == 6 })

	// Two replicas join: a sheds what is more than its share between
	// two reconciles, and each ends with ceil(6/3) = 2.
	b, _ := start(t, "b", etcd.Endpoints(), gs, h)
	start(t, "c", etcd.Endpoints(), gs, h)
	waitFor(t, 10*time.Second, "each of three replicas holds two groups", func() bool {
		c := h.count()
		return c["a"] == 2 && c["b"] == 2 && c["c"] == 2
	})
	// What status shows agrees with who runs the group.
	waitFor(t, 5*time.Second, "every replica knows every owner", func() bool {
		for _, g := range gs {
			if b.Owner(g) != h.holder(g) {
				return false
			}
		}
		return b.Replicas() == 3
	})
}

func TestDeadReplicaLosesItsGroupsWithinTheLease(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	h := newHolders(t)
	gs := groups(4)
	a, stopA := start(t, "a", etcd.Endpoints(), gs, h)
	waitFor(t, 10*time.Second, "a holds every group", func() bool { return h.count()["a"] == 4 })
	b, _ := start(t, "b", etcd.Endpoints(), gs, h)
	waitFor(t, 10*time.Second, "a and b hold two groups each", func() bool {
		c := h.count()
		return c["a"] == 2 && c["b"] == 2
	})
	var aGroup string
	for _, g := range gs {
		if h.holder(g) == "a" {
			aGroup = g
		}
	}
	ctx := context.Background()
	if err := a.Check(ctx, aGroup); err != nil {
		t.Fatalf("the owner's check fails: %v", err)
	}
	if err := b.Check(ctx, aGroup); !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), `held by replica "a"`) {
		t.Fatalf("another replica's check of a's group: %v", err)
	}

	kill(a, stopA)
	h.forget("a")
	died := time.Now()
	waitFor(t, ttl+b.opts.Poll+2*time.Second, "b holds every group after a died", func() bool { return h.count()["b"] == 4 })
	took := h.claimedAt["b"][aGroup].Sub(died)
	t.Logf("a's group %s moved to b %s after a died (ttl %s, poll %s)", aGroup, took, ttl, b.opts.Poll)
	if took > ttl+b.opts.Poll+time.Second {
		t.Errorf("the group moved after %s, want within ttl %s + poll %s", took, ttl, b.opts.Poll)
	}
	if err := b.Check(ctx, aGroup); err != nil {
		t.Fatalf("the new owner's check fails: %v", err)
	}
	// A's lease is gone: by its own clock it may do nothing.
	if err := a.Check(ctx, aGroup); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("the dead replica's check: %v", err)
	}
}

// A replica cut off from etcd refuses every step before the lease that
// lets another replica claim its groups can have expired.
func TestCutOffReplicaStopsBeforeAnotherTakesOver(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	proxy := etcdtest.NewProxy(t, etcd.Endpoint(0))
	h := newHolders(t)
	gs := groups(1)
	a, _ := start(t, "a", []string{proxy.URL()}, gs, h)
	waitFor(t, 10*time.Second, "a holds the group", func() bool { return h.holder("g0") == "a" })
	b, _ := start(t, "b", etcd.Endpoints(), gs, h)
	waitFor(t, 5*time.Second, "b sees a", func() bool { return b.Replicas() == 2 })

	ctx := context.Background()
	if err := a.Check(ctx, "g0"); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	// a's worker stays (the group may still be a's) but may do nothing:
	// what is checked from here on is what each replica's fence allows.
	h.forget("a")
	var refusedAt time.Time
	waitFor(t, ttl, "a refuses once cut off", func() bool {
		if err := a.Check(ctx, "g0"); errors.Is(err, ErrNotOwner) {
			refusedAt = time.Now()
			return true
		}
		return false
	})
	waitFor(t, ttl+b.opts.Poll+2*time.Second, "b claims the group", func() bool {
		return b.Check(ctx, "g0") == nil
	})
	claimedAt := time.Now()
	if !refusedAt.Before(claimedAt) {
		t.Fatalf("a refused at %s, b could act at %s", refusedAt, claimedAt)
	}
	// And a goes on refusing: it cannot reach etcd, and its lease is
	// over by its own clock.
	err := a.Check(ctx, "g0")
	if !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), "last renewed") {
		t.Fatalf("a's check after b took over: %v", err)
	}
	if a.Health() == nil {
		t.Fatal("a says it is healthy while cut off")
	}
}

// Without quorum no replica can prove anything: every step is refused,
// and once quorum is back the same owner goes on.
func TestNoQuorumRefusesEveryStep(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	h := newHolders(t)
	a, _ := start(t, "a", etcd.Endpoints(), groups(1), h)
	waitFor(t, 10*time.Second, "a holds the group", func() bool { return h.holder("g0") == "a" })
	ctx := context.Background()
	if err := a.Check(ctx, "g0"); err != nil {
		t.Fatal(err)
	}
	// One member down: a majority remains, nothing changes.
	etcd.Stop(2)
	waitFor(t, 10*time.Second, "a still proves ownership with two of three members", func() bool { return a.Check(ctx, "g0") == nil })

	etcd.Stop(1)
	waitFor(t, ttl, "a refuses without quorum", func() bool { return errors.Is(a.Check(ctx, "g0"), ErrNotOwner) })
	if a.Health() == nil {
		t.Error("health is fine without quorum")
	}
	etcd.Restart(1)
	etcd.Restart(2)
	waitFor(t, 30*time.Second, "a proves ownership again once quorum is back", func() bool { return a.Check(ctx, "g0") == nil })
	if h.holder("g0") != "a" {
		t.Fatalf("the group moved to %q while quorum was lost", h.holder("g0"))
	}
}

// fakeServers counts the calls that reach it.
type fakeServers struct {
	provisioner.Servers
	creates, deletes, lists int
}

func (f *fakeServers) CreateServer(context.Context, provisioner.ServerSpec) (provisioner.Server, error) {
	f.creates++
	return provisioner.Server{ID: "s1"}, nil
}
func (f *fakeServers) DeleteServer(context.Context, string) error { f.deletes++; return nil }
func (f *fakeServers) ListServers(context.Context, string) ([]provisioner.Server, error) {
	f.lists++
	return nil, nil
}

type verdict struct{ err error }

func (v *verdict) Check(context.Context, string) error { return v.err }

func TestFencedCloudRefusesChangesAndPassesReads(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		err     error
		reached int
	}{
		{"owner", nil, 1},
		{"not owner", fmt.Errorf("group web: lease gone: %w", ErrNotOwner), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &fakeServers{}
			c := fence(&verdict{tc.err}, "web", provisioner.Cloud{Servers: inner})
			_, cerr := c.Servers.CreateServer(ctx, provisioner.ServerSpec{Name: "web-1"})
			derr := c.Servers.DeleteServer(ctx, "s1")
			if inner.creates != tc.reached || inner.deletes != tc.reached {
				t.Errorf("%d creates and %d deletes reached the cloud, want %d", inner.creates, inner.deletes, tc.reached)
			}
			if tc.err != nil && (!errors.Is(cerr, ErrNotOwner) || !errors.Is(derr, ErrNotOwner) || !strings.Contains(cerr.Error(), "create server web-1 refused")) {
				t.Errorf("errors %v, %v", cerr, derr)
			}
			if _, err := c.Servers.ListServers(ctx, "tag"); err != nil || inner.lists != 1 {
				t.Errorf("a read did not pass through: %v, %d lists", err, inner.lists)
			}
			// A service the cloud lacks stays absent.
			if _, err := c.LoadBalancer.ResolvePool(ctx, "", "pool"); !errors.Is(err, provisioner.ErrUnavailable) {
				t.Errorf("the absent load balancer answered %v, want ErrUnavailable", err)
			}
		})
	}
}

// A replica that was cut off long enough for etcd to expire its lease
// comes back with a new lease, owns nothing of its old groups, and gets
// its share again when the other sheds it.
func TestReplicaBackAfterItsLeaseExpired(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	proxy := etcdtest.NewProxy(t, etcd.Endpoint(0))
	h := newHolders(t)
	gs := groups(2)
	a, _ := start(t, "a", []string{proxy.URL()}, gs, h)
	waitFor(t, 10*time.Second, "a holds both groups", func() bool { return h.count()["a"] == 2 })
	b, _ := start(t, "b", etcd.Endpoints(), gs, h)
	waitFor(t, 10*time.Second, "one group each", func() bool { c := h.count(); return c["a"] == 1 && c["b"] == 1 })
	oldLease := a.session().lease

	proxy.Cut()
	h.forget("a") // fenced from here on; its worker may linger
	waitFor(t, ttl+b.opts.Poll+5*time.Second, "b holds both groups", func() bool { return h.count()["b"] == 2 })

	proxy.Restore(t)
	waitFor(t, 15*time.Second, "one group each again", func() bool { c := h.count(); return c["a"] == 1 && c["b"] == 1 })
	if l := a.session().lease; l == oldLease || l == 0 {
		t.Errorf("a's lease %x after its old one %x expired: want a new one", int64(l), int64(oldLease))
	}
	ctx := context.Background()
	for _, g := range gs {
		owner := h.holder(g)
		r := map[string]*Replica{"a": a, "b": b}[owner]
		if err := r.Check(ctx, g); err != nil {
			t.Errorf("the holder %s of %s cannot prove it: %v", owner, g, err)
		}
	}
}

// A reload that removes a group gives its key up; one that adds a group
// has it claimed.
func TestReloadReleasesAndClaims(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	h := newHolders(t)
	var mu sync.Mutex
	gs := []string{"g0", "g1"}
	configured := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(gs)
	}
	a, _ := startWith(t, "a", etcd.Endpoints(), configured, h)
	waitFor(t, 10*time.Second, "a holds both groups", func() bool { return h.count()["a"] == 2 })

	mu.Lock()
	gs = []string{"g1", "g2"}
	mu.Unlock()
	// The worker of g0 stops before its key goes: no replica still
	// configured with g0 may claim it while the worker finishes a step.
	h.mu.Lock()
	h.onApply = func(replica string, owned []string) {
		// Called with h.mu held: the moment a's worker of g0 stops.
		if replica != "a" || slices.Contains(owned, "g0") || h.by["g0"] != "a" {
			return
		}
		resp, err := a.cli.Get(context.Background(), a.groupKey("g0"))
		if err == nil && len(resp.Kvs) == 0 {
			t.Errorf("the key of g0 was released before its worker stopped")
		}
	}
	h.mu.Unlock()
	waitFor(t, 10*time.Second, "g0 given up and g2 claimed", func() bool {
		return h.holder("g0") == "" && h.holder("g1") == "a" && h.holder("g2") == "a"
	})
	resp, err := a.cli.Get(context.Background(), a.groupKey("g0"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("the key of the removed group g0 is still there: %s", resp.Kvs[0].Value)
	}
}
