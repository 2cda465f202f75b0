package daemon_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// Nova says a server of a converged group stopped: its group looks at
// once and replaces it, where without the notification it would wait
// for the interval (an hour here). The server is found by its group tag
// when the payload carries it (versioned notifications), else among the
// servers the groups saw last (legacy ones); other groups are not woken.
func TestNotifiedStoppedServerIsReplacedAtOnce(t *testing.T) {
	for i, tc := range []struct {
		name   string
		tagged bool
	}{{"found by its tag", true}, {"found among the servers seen", false}} {
		t.Run(tc.name, func(t *testing.T) {
			env := simtest.Start(t, grouptest.FastSim(int64(1900+i)), 0)
			gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 3, ""), daemonGroup("api", "gold", "m1.small", 2, "")))
			d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
			api := grouptest.IDsOf(env.Sim, "api")
			victim := grouptest.IDsOf(env.Sim, "web")[1]
			grouptest.StopBehindTheBack(t, env, grouptest.Compute(t, env), victim, "stop")

			n := notifications.Notification{Kind: notifications.KindInstance, EventType: "instance.power_off.end", ServerID: victim, State: "stopped"}
			if tc.tagged {
				n.Tags = []string{"other", controller.GroupTag("web")}
			}
			d.Notified(context.Background(), n)
			grouptest.WaitUntil(t, 30*time.Second, "the stopped server replaced", func() bool {
				_, there := env.Sim.Server(victim)
				return !there && len(grouptest.IDsOf(env.Sim, "web")) == 3
			})
			d.converged(t, env.Sim, map[string]string{"web": gold.ID, "api": gold.ID})
			if got := grouptest.IDsOf(env.Sim, "api"); !slices.Equal(got, api) {
				t.Errorf("group api was touched: %v → %v", api, got)
			}
			if got := woke(t, d, "web"); got < 1 {
				t.Errorf("phoenix_notifications_woke_total for web = %v, want at least 1", got)
			}
		})
	}
}

// Glance says an image became active: the selectors are resolved again at
// once, and the groups whose newest image it is roll it out, although
// the interval (and the image cache) is an hour.
func TestNotifiedImageStartsRolloutAtOnce(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1910), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})

	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	d.Notified(context.Background(), notifications.Notification{Kind: notifications.KindImage, EventType: "image.activate", ImageID: patched.ID})
	d.converged(t, env.Sim, map[string]string{"web": patched.ID})
}

// A notification of a server no group here knows, or before the groups
// started, changes nothing and breaks nothing.
func TestNotifiedUnknownServerChangesNothing(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1911), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 2, "")))
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	before := grouptest.IDsOf(env.Sim, "web")
	d.Notified(context.Background(), notifications.Notification{Kind: notifications.KindInstance, EventType: "instance.delete.end", ServerID: "not-a-server-of-ours"})
	d.Notified(context.Background(), notifications.Notification{Kind: notifications.KindInstance, EventType: "instance.update", ServerID: "x",
		Tags: []string{controller.GroupTag("elsewhere")}})
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, before) {
		t.Errorf("servers changed: %v → %v", before, got)
	}
}

// woke reads phoenix_notifications_woke_total of group.
func woke(t *testing.T, d *runningDaemon, group string) float64 {
	t.Helper()
	families, err := d.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "phoenix_notifications_woke_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "group" && l.GetValue() == group {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
