package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// notices collects what a Notifier posts.
type notices struct {
	mu  sync.Mutex
	got []daemon.Notice
}

func (n *notices) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var no daemon.Notice
	if err := json.NewDecoder(r.Body).Decode(&no); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	n.got = append(n.got, no)
	n.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// of returns the notices of kind.
func (n *notices) of(kind string) []daemon.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []daemon.Notice
	for _, no := range n.got {
		if no.Kind == kind {
			out = append(out, no)
		}
	}
	return out
}

// A daemon whose rollout the quota blocks shows the wait — in
// /v1/status, in phoenix_quota_blocked and in a quota-blocked notice with
// Nova's message — and does not halt when its clock moves three progress
// deadlines on; once the quota frees, the rollout completes, the metric
// drops and a quota-freed notice follows.
func TestDaemonShowsAQuotaWait(t *testing.T) {
	const nova = "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
	env := simtest.Start(t, grouptest.FastSim(1930), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	box := &notices{}
	hook := httptest.NewServer(box)
	defer hook.Close()
	notifier := daemon.NewNotifier([]config.NotifyTarget{{URL: hook.URL}}, grouptest.Logger(t))
	defer notifier.Close()
	// The daemon's clock runs with the real one, ahead by what the test
	// adds.
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	yaml := daemonYAML(strings.Replace(daemonGroup("web", "gold", "m1.small", 2, ""),
		"rollout: {max_surge: 2, max_unavailable: 0, min_ready: 30ms}",
		"rollout: {max_surge: 1, min_ready: 30ms, progress_deadline: 1m, create_backoff_max: 1s}", 1))
	d := startDaemon(t, env, yaml, func(o *daemon.Options) { o.Sink, o.Now = notifier, now })
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	metrics := httptest.NewServer(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	defer metrics.Close()
	old := grouptest.IDsOf(env.Sim, "web")

	env.Sim.SetQuota(sim.Quota{Instances: 2})
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	if err := d.Dispatch(context.Background(), trigger.Event{ID: "q", Type: trigger.TypeImagePublished}); err != nil {
		t.Fatal(err)
	}
	waiting := func() daemon.GroupStatus {
		st := d.Status().Groups[0]
		if st.Halted != "" || st.Status.Halted {
			t.Fatalf("the rollout halted while the quota was full: %s", st.Halted)
		}
		return st
	}
	grouptest.WaitUntil(t, 20*time.Second, "the status, the metric and a notice to show the wait", func() bool {
		return waiting().Status.Waiting == "quota — "+nova && scrape(t, metrics.URL)["phoenix_quota_blocked"] == 1 &&
			len(box.of("quota-blocked")) == 1
	})
	if no := box.of("quota-blocked")[0]; no.Group != "web" || !strings.Contains(no.Reason, nova) {
		t.Errorf("notice %+v: want group web, with Nova's message", no)
	}

	// Three progress deadlines and more pass on the daemon's clock; two
	// reconciles later the rollout still waits.
	jumped := now().Add(3*time.Minute + 30*time.Second)
	ahead.Add(int64(3*time.Minute + 30*time.Second))
	var seen time.Time
	grouptest.WaitUntil(t, 20*time.Second, "two reconciles after the clock moved", func() bool {
		st := waiting()
		if st.LastReconcile.After(jumped) && seen.IsZero() {
			seen = st.LastReconcile
		}
		return !seen.IsZero() && st.LastReconcile.After(seen)
	})
	st := waiting()
	m := scrape(t, metrics.URL)
	if st.Status.Waiting != "quota — "+nova || !st.InProgress || m["phoenix_quota_blocked"] != 1 || m["phoenix_rollout_halted"] != 0 {
		t.Errorf("after 3.5 progress deadlines: waiting %q, in progress %v, phoenix_quota_blocked %v, phoenix_rollout_halted %v; want the wait, no halt",
			st.Status.Waiting, st.InProgress, m["phoenix_quota_blocked"], m["phoenix_rollout_halted"])
	}
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, old) {
		t.Errorf("servers %v during the wait, want the old ones %v", got, old)
	}

	// The quota frees: the rollout completes and the wait is over.
	env.Sim.SetQuota(sim.Quota{Instances: -1})
	d.converged(t, env.Sim, map[string]string{"web": patched.ID})
	grouptest.WaitUntil(t, 10*time.Second, "a quota-freed notice", func() bool { return len(box.of("quota-freed")) == 1 })
	if st := d.Status().Groups[0]; st.Status.Waiting != "" || scrape(t, metrics.URL)["phoenix_quota_blocked"] != 0 {
		t.Errorf("after the rollout: waiting %q, phoenix_quota_blocked %v; want neither", st.Status.Waiting, scrape(t, metrics.URL)["phoenix_quota_blocked"])
	}
	if n := len(box.of("quota-blocked")); n != 1 {
		t.Errorf("%d quota-blocked notices, want 1", n)
	}
}

// The quota events become notices of their own kind, with the message.
func TestQuotaNotices(t *testing.T) {
	box := &notices{}
	hook := httptest.NewServer(box)
	defer hook.Close()
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: hook.URL}}, grouptest.Logger(t))
	n.Emit(controller.Event{Type: controller.EventQuotaBlocked, Group: "web", Reason: "Quota exceeded for instances",
		Message: "group web waits for quota: the cloud refuses new servers (Quota exceeded for instances)."})
	n.Emit(controller.Event{Type: controller.EventQuotaFreed, Group: "web", Message: "group web: the cloud accepts new servers again"})
	n.Close()
	for _, kind := range []string{"quota-blocked", "quota-freed"} {
		got := box.of(kind)
		if len(got) != 1 || got[0].Group != "web" || got[0].Reason == "" {
			t.Errorf("%s notices %+v, want one for web with the message", kind, got)
		}
	}
	if got := box.of("quota-blocked"); len(got) == 1 && !strings.Contains(got[0].Reason, "Quota exceeded for instances") {
		t.Errorf("the quota-blocked notice %q lacks the cloud's message", got[0].Reason)
	}
}
