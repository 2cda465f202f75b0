package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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

// A daemon rolls a group back from an image whose boots fail, and says so
// in status and metrics, naming the rejected image.
func TestDaemonRollbackInStatusAndMetrics(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1510), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	group := strings.Replace(daemonGroup("web", "gold", "m1.small", 3, ""),
		"rollout: {max_surge: 2, max_unavailable: 0, min_ready: 30ms}", "rollout: {max_surge: 1, min_ready: 30ms, max_failures: 1, on_failure: rollback}", 1)
	d := startDaemon(t, env, daemonYAML(group))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	srv := httptest.NewServer(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	if got := scrape(t, srv.URL)["phoenix_rollout_rejected"]; got != 0 {
		t.Fatalf("phoenix_rollout_rejected %v before any rollback", got)
	}

	bad := env.Sim.AddImage(sim.Image{Name: "gold", BootFails: true})
	_ = d.Dispatch(context.Background(), trigger.Event{ID: "rb", Type: trigger.TypeImagePublished})
	grouptest.WaitUntil(t, 30*time.Second, "the rollback in status", func() bool {
		st := d.Status().Groups
		return len(st) == 1 && st[0].RolledBack != "" && !st[0].InProgress
	})
	st := d.Status().Groups[0]
	if !strings.Contains(st.RolledBack, "image "+bad.ID+" rejected") || !strings.Contains(st.RolledBack, "server is in ERROR") ||
		st.DesiredImage.ID != gold.ID || st.Halted != "" || !st.Status.RollingBack {
		t.Errorf("status %+v: want the rejected image and why, back on %s, not halted", st, gold.ID)
	}
	for _, s := range env.Sim.Servers() {
		if s.ImageID != gold.ID || !s.Healthy {
			t.Errorf("%s runs %s (healthy %v), want %s", s.Name, s.ImageID, s.Healthy, gold.ID)
		}
	}
	if got := scrape(t, srv.URL)["phoenix_rollout_rejected"]; got != 1 {
		t.Errorf("phoenix_rollout_rejected %v, want 1", got)
	}
}

// The rollback reaches the notice URLs with its message.
func TestRollbackNotice(t *testing.T) {
	got := make(chan daemon.Notice, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n daemon.Notice
		_ = json.NewDecoder(r.Body).Decode(&n)
		got <- n
	}))
	defer srv.Close()
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: srv.URL}}, grouptest.Logger(t))
	n.Emit(controller.Event{Type: controller.EventRolledBack, Group: "web", Image: "bad", Reason: "3 new servers went to ERROR",
		Message: "rollout of group web to image bad failed: 3 new servers went to ERROR. Rolling back to image good"})
	n.Close()
	select {
	case no := <-got:
		if no.Kind != "rollout-rolled-back" || no.Group != "web" || no.ToImage != "bad" || !strings.Contains(no.Reason, "Rolling back to image good") {
			t.Errorf("notice %+v, want a rollout-rolled-back notice with the message", no)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rollout-rolled-back notice")
	}
}
