package daemon_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// sampleValue is the value of the one series of name with exactly labels,
// and whether /metrics has it.
func sampleValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
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
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// Counters whose label values are known start at 0, so that an alert's
// rate() or increase() has a series before the first error, refusal or
// replacement happens.
func TestCountersStartAtZero(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(2300), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 1, ""), daemonGroup("api", "gold", "m1.small", 1, "")))
	grouptest.WaitUntil(t, 10*time.Second, "the groups' counters", func() bool {
		_, ok := sampleValue(t, d.reg, "phoenix_reconciles_total", map[string]string{"group": "api", "result": "error"})
		return ok
	})

	var want []string
	for _, g := range []string{"web", "api"} {
		want = append(want, "phoenix_reconciles_total{group="+g+",result=error}", "phoenix_reconciles_total{group="+g+",result=ok}",
			"phoenix_replacements_total{group="+g+",reason=compromised}", "phoenix_replacements_total{group="+g+",reason=heal}",
			"phoenix_notifications_woke_total{group="+g+"}", "phoenix_reconcile_duration_seconds{group="+g+"}")
	}
	for _, typ := range []string{trigger.TypeImagePublished, trigger.TypeSecurityPatch, trigger.TypeInstanceCompromised} {
		want = append(want, "phoenix_events_accepted_total{type="+typ+"}")
	}
	for _, code := range trigger.RefusalCodes {
		want = append(want, "phoenix_events_refused_total{code="+strconv.Itoa(code)+"}")
	}
	want = append(want, "phoenix_notifications_woke_total{group=image}")
	for _, w := range want {
		name, labels := parseSeries(w)
		if _, ok := sampleValue(t, d.reg, name, labels); !ok {
			t.Errorf("/metrics has no %s before anything happened", w)
		}
	}
}

// parseSeries splits `name{k=v,...}` (no quotes, no commas in values).
func parseSeries(s string) (string, map[string]string) {
	name, rest, _ := strings.Cut(s, "{")
	labels := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	return name, labels
}

// The webhook's refusals are counted by status code, and only an event
// that answered 202 counts as accepted.
func TestEventRefusalsCounted(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(2310), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 1, "")))
	secret := []byte("metrics-test-secret")
	srv := httptest.NewServer(d.Handler(daemon.HandlerOptions{Metrics: d.reg, Secret: func() []byte { return secret }}))
	defer srv.Close()
	grouptest.WaitUntil(t, 10*time.Second, "the daemon to run its groups", func() bool { return len(d.Status().Groups) == 1 })

	send := func(body string, key []byte) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		ts, sig := trigger.Sign(key, time.Now(), []byte(body))
		req.Header.Set(trigger.HeaderTimestamp, ts)
		req.Header.Set(trigger.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		body   string
		key    []byte
		status int
	}{
		{`{"id":"a","type":"image.published"}`, []byte("an old secret"), 401},
		{`{"id":"b","type":"security.patch","groups":["nope"],"reason":"CVE-1"}`, secret, 422},
		{`{"id":"c","type":"image.published"}`, secret, 202},
		{`{"id":"c","type":"image.published"}`, secret, 409},
	} {
		if got := send(tc.body, tc.key); got != tc.status {
			t.Fatalf("%s answered %d, want %d", tc.body, got, tc.status)
		}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"phoenix_events_refused_total", map[string]string{"code": "401"}, 1},
		{"phoenix_events_refused_total", map[string]string{"code": "422"}, 1},
		{"phoenix_events_refused_total", map[string]string{"code": "409"}, 1},
		{"phoenix_events_refused_total", map[string]string{"code": "503"}, 0},
		{"phoenix_events_accepted_total", map[string]string{"type": "image.published"}, 1},
		{"phoenix_events_accepted_total", map[string]string{"type": "security.patch"}, 0},
	} {
		if got, ok := sampleValue(t, d.reg, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

// A group's last successful reconcile is stamped with the daemon's clock;
// it reads 0 until the first.
func TestLastReconcileSuccessTimestamp(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(2320), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	at := time.Date(2026, 3, 5, 9, 30, 0, 0, time.UTC)
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 1, "")), func(o *daemon.Options) {
		o.Now = func() time.Time { return at }
		o.Reconciler.Now = time.Now // the rollout's own clocks run
	})
	group := map[string]string{"group": "web"}
	grouptest.WaitUntil(t, 10*time.Second, "a successful reconcile", func() bool {
		v, _ := sampleValue(t, d.reg, "phoenix_group_last_reconcile_success_timestamp_seconds", group)
		return v != 0
	})
	if v, _ := sampleValue(t, d.reg, "phoenix_group_last_reconcile_success_timestamp_seconds", group); v != float64(at.Unix()) {
		t.Errorf("last success %v, want the daemon's clock %d", v, at.Unix())
	}
}

// Notices are counted by what became of them: a URL that answers 4xx is
// a failure at once (no retry), one that answers 204 a delivery.
func TestNoticesCounted(t *testing.T) {
	good := httptest.NewServer(&notices{})
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusBadRequest) }))
	defer bad.Close()
	reg := prometheus.NewRegistry()
	m := daemon.NewMetrics(reg)
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: good.URL}, {URL: bad.URL}}, grouptest.Logger(t))
	defer n.Close()
	m.WatchNotices(n)
	for _, result := range []string{"delivered", "failed", "dropped"} {
		if v, ok := sampleValue(t, reg, "phoenix_notices_total", map[string]string{"result": result}); !ok || v != 0 {
			t.Errorf("phoenix_notices_total{result=%q} = %v (present %v) before any notice, want 0", result, v, ok)
		}
	}
	n.Emit(controller.Event{Type: controller.EventConverged, Group: "web", Time: time.Now()})
	grouptest.WaitUntil(t, 10*time.Second, "the notice to be tried at both URLs", func() bool {
		delivered, _ := sampleValue(t, reg, "phoenix_notices_total", map[string]string{"result": "delivered"})
		failed, _ := sampleValue(t, reg, "phoenix_notices_total", map[string]string{"result": "failed"})
		return delivered == 1 && failed == 1
	})
}
