package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A gold image older than its selector's image.max_age raises the alert
// in status, metrics and events, without touching a server; publishing a
// newer one clears it. A group without max_age never alerts.
func TestGoldImageFreshness(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1200), 0)
	old := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-10 * 24 * time.Hour)})
	web := strings.Replace(daemonGroup("web", "gold", "m1.small", 2, ""), "newest: true}", "newest: true, max_age: 168h}", 1)
	yaml := daemonYAML(web, daemonGroup("db", "gold", "m1.small", 1, ""))
	cfg, err := config.Parse("daemon.yaml", []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := daemon.NewMetrics(reg)
	log := &controller.EventLog{}
	d := daemon.New(env.Cloud.Services(), cfg, daemon.Options{Log: grouptest.Logger(t), Metrics: m, Sink: log,
		PollInterval: 50 * time.Millisecond, Reconciler: grouptest.FastOptions()})
	m.Watch(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rd := &runningDaemon{Daemon: d, reg: reg}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	rd.converged(t, env.Sim, map[string]string{"web": old.ID, "db": old.ID})
	built := append(grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "db")...)
	byGroup := func() map[string]daemon.GroupStatus {
		out := map[string]daemon.GroupStatus{}
		for _, g := range d.Status().Groups {
			out[g.Group] = g
		}
		return out
	}
	st := byGroup()
	if !strings.Contains(st["web"].ImageStale, "more than image.max_age 168h") || st["db"].ImageStale != "" {
		t.Errorf("stale alerts: web %q, db %q; want web only", st["web"].ImageStale, st["db"].ImageStale)
	}
	if age := st["web"].ImageAgeSeconds; age < (10*24*time.Hour).Seconds()-60 {
		t.Errorf("image age %vs, want about ten days", age)
	}
	if got := scrape(t, srv.URL)["phoenix_gold_image_stale"]; got != 1 {
		t.Errorf("phoenix_gold_image_stale sums to %v, want 1 (web)", got)
	}
	if now := append(grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "db")...); !slices.Equal(now, built) {
		t.Errorf("the alert changed the servers: %v, were %v", now, built)
	}

	fresh := env.Sim.AddImage(sim.Image{Name: "gold"})
	_ = d.Dispatch(context.Background(), trigger.Event{ID: "fresh", Type: trigger.TypeImagePublished})
	rd.converged(t, env.Sim, map[string]string{"web": fresh.ID, "db": fresh.ID})
	grouptest.WaitUntil(t, 10*time.Second, "the alert to clear", func() bool { return byGroup()["web"].ImageStale == "" })
	if got := scrape(t, srv.URL)["phoenix_gold_image_stale"]; got != 0 {
		t.Errorf("phoenix_gold_image_stale = %v after a fresh image, want 0", got)
	}
	var kinds []string
	for _, e := range log.Events() {
		if e.Type == controller.EventImageStale || e.Type == controller.EventImageFresh {
			kinds = append(kinds, e.Group+" "+e.Type)
		}
	}
	if want := []string{"web image-stale", "web image-fresh"}; !slices.Equal(kinds, want) {
		t.Errorf("freshness events %v, want %v (once each)", kinds, want)
	}
}

// The alert and its clearing reach the notice URLs.
func TestFreshnessNotices(t *testing.T) {
	got := make(chan daemon.Notice, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n daemon.Notice
		_ = json.NewDecoder(r.Body).Decode(&n)
		got <- n
	}))
	defer srv.Close()
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: srv.URL}}, grouptest.Logger(t))
	n.Emit(controller.Event{Type: controller.EventImageStale, Group: "web", Message: "the newest gold image of group web ..."})
	n.Emit(controller.Event{Type: controller.EventImageFresh, Group: "web", Message: "fresh again"})
	n.Close()
	for _, want := range []string{"image-stale", "image-fresh"} {
		select {
		case no := <-got:
			if no.Kind != want || no.Group != "web" || no.Reason == "" {
				t.Errorf("notice %+v, want kind %s for web with the message", no, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s notice", want)
		}
	}
}
