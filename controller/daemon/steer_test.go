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

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A held group shows why in status and metrics and starts nothing for a
// new image; a patch without urgency waits too; an urgent one does not;
// a patch naming servers replaces those and no other.
func TestDaemonSteering(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1610), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	yaml := daemonYAML(daemonGroup("web", "gold", "m1.small", 3, "    hold: true\n"), daemonGroup("api", "gold", "m1.small", 3, ""))
	d := startDaemon(t, env, yaml)
	// A hold starts no replacement, but a group is still built to count.
	d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
	web, api := grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "api")

	ctx := context.Background()
	if err := d.Dispatch(ctx, trigger.Event{ID: "p1", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Reason: "CVE-2026-1"}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "web to defer the patch", func() bool {
		for _, g := range d.Status().Groups {
			if g.Group == "web" {
				return g.Status.Deferred == 3 && strings.HasPrefix(g.Status.Steering, "held: in the configuration")
			}
		}
		return false
	})
	if got := gaugeValue(t, d.reg, "phoenix_rollout_steered", map[string]string{"group": "web", "cause": "held"}); got != 1 {
		t.Errorf("phoenix_rollout_steered{cause=held} = %v, want 1", got)
	}
	if got := gaugeValue(t, d.reg, "phoenix_servers_deferred", map[string]string{"group": "web"}); got != 3 {
		t.Errorf("phoenix_servers_deferred = %v, want 3", got)
	}
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, web) {
		t.Fatalf("a held group was rebuilt for a patch without urgency: %v", got)
	}

	// Named servers, urgent: exactly those go, hold or not.
	if err := d.Dispatch(ctx, trigger.Event{ID: "p2", Type: trigger.TypeSecurityPatch, Servers: []string{web[0], api[2]}, Urgent: true, Reason: "CVE-2026-2"}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "the servers named to be replaced", func() bool {
		w, a := grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "api")
		return len(w) == 3 && len(a) == 3 && !slices.Contains(w, web[0]) && !slices.Contains(a, api[2])
	})
	grouptest.WaitUntil(t, 30*time.Second, "api to converge", func() bool {
		for _, g := range d.Status().Groups {
			if g.Group == "api" {
				return g.Status.Converged
			}
		}
		return false
	})
	w, a := grouptest.IDsOf(env.Sim, "web"), grouptest.IDsOf(env.Sim, "api")
	for _, id := range []string{web[1], web[2]} {
		if !slices.Contains(w, id) {
			t.Errorf("web server %s was replaced though not named", id)
		}
	}
	for _, id := range api[:2] {
		if !slices.Contains(a, id) {
			t.Errorf("api server %s was replaced though not named", id)
		}
	}

	// An unknown server is refused, as an unknown group is.
	if err := d.Dispatch(ctx, trigger.Event{ID: "p3", Type: trigger.TypeSecurityPatch, Servers: []string{"no-such-server"}, Reason: "x"}); err == nil || !strings.Contains(err.Error(), "no-such-server") {
		t.Errorf("a patch naming an unknown server: %v", err)
	}

	// Urgent, for the whole group: it goes though held.
	if err := d.Dispatch(ctx, trigger.Event{ID: "p4", Type: trigger.TypeSecurityPatch, Groups: []string{"web"}, Urgent: true, Reason: "CVE-2026-3"}); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "web to be rebuilt for the urgent patch", func() bool {
		now := grouptest.IDsOf(env.Sim, "web")
		return len(now) == 3 && !slices.ContainsFunc(now, func(id string) bool { return slices.Contains(w, id) })
	})
}

func TestSteeringNotices(t *testing.T) {
	got := make(chan daemon.Notice, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n daemon.Notice
		_ = json.NewDecoder(r.Body).Decode(&n)
		got <- n
	}))
	defer srv.Close()
	n := daemon.NewNotifier([]config.NotifyTarget{{URL: srv.URL}}, grouptest.Logger(t))
	n.Emit(controller.Event{Type: controller.EventDeferred, Group: "web", Message: "3 replacements of group web wait: held: by alice"})
	n.Emit(controller.Event{Type: controller.EventUndeferred, Group: "web", Message: "replacements of group web may start again"})
	n.Close()
	for _, want := range []string{"deferred", "undeferred"} {
		select {
		case no := <-got:
			if no.Kind != want || no.Group != "web" || no.Reason == "" {
				t.Errorf("notice %+v, want kind %s with the message", no, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s notice", want)
		}
	}
}
