package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/controller/notifications/rabbittest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

func TestMain(m *testing.M) { os.Exit(rabbittest.Run(m)) }

// captured is a body the development cloud published (see
// controller/notifications/testdata/devcloud), about id instead of the
// server or image it was captured for.
func captured(t *testing.T, file, id string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "notifications", "testdata", "devcloud", file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := notifications.Decode(body)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	was := n.ServerID
	if n.Kind == notifications.KindImage {
		was = n.ImageID
	}
	if was == "" {
		t.Fatalf("%s names no server or image", file)
	}
	return bytes.ReplaceAll(body, []byte(was), []byte(id))
}

// A daemon listening on a real RabbitMQ, fed the bodies Nova and Glance
// published on the development cloud: a server stopped behind Phoenix's
// back is replaced and a new gold image rolls out, each long before the
// interval (an hour); the broker restarts in the middle of the rollout,
// the listener connects again, the rollout completes, and a server stopped
// after the restart is replaced on its notification too.
func TestNotificationsFromTheBrokerWakeTheGroups(t *testing.T) {
	b := rabbittest.Shared(t)
	env := simtest.Start(t, grouptest.FastSim(1920), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	d := startDaemon(t, env, daemonYAML(daemonGroup("web", "gold", "m1.small", 3, "")))
	l, err := notifications.NewListener(notifications.Config{URL: b.URL(), Queue: "phoenix-daemon-test",
		Backoff: notifications.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}}, d.Notified, grouptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	d.Listen(l)
	d.converged(t, env.Sim, map[string]string{"web": gold.ID})
	grouptest.WaitUntil(t, 30*time.Second, "the listener connected", func() bool { return l.Status().Connected })

	stopAndNotify := func(file string) {
		t.Helper()
		victim := grouptest.IDsOf(env.Sim, "web")[0]
		grouptest.StopBehindTheBack(t, env, grouptest.Compute(t, env), victim, "stop")
		if err := b.Publish(context.Background(), "nova", "notifications", captured(t, file, victim)); err != nil {
			t.Fatal(err)
		}
		grouptest.WaitUntil(t, 30*time.Second, "the stopped server replaced", func() bool {
			_, there := env.Sim.Server(victim)
			return !there && len(grouptest.IDsOf(env.Sim, "web")) == 3
		})
	}
	stopAndNotify("nova.compute.instance.power_off.end.legacy.json")

	patched := env.Sim.AddImage(sim.Image{Name: "gold"})
	if err := b.Publish(context.Background(), "glance", "notifications", captured(t, "glance.image.activate.json", patched.ID)); err != nil {
		t.Fatal(err)
	}
	grouptest.WaitUntil(t, 30*time.Second, "the rollout under way", func() bool {
		for _, s := range env.Sim.Servers() {
			if s.ImageID == patched.ID {
				return true
			}
		}
		return false
	})
	b.Stop()
	grouptest.WaitUntil(t, 30*time.Second, "the listener to see the broker gone", func() bool { return !l.Status().Connected })
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	d.converged(t, env.Sim, map[string]string{"web": patched.ID})
	grouptest.WaitUntil(t, 60*time.Second, "the listener connected again", func() bool {
		s := l.Status()
		return s.Connected && s.Reconnects >= 1
	})
	if st := d.Status().Notifications; st == nil || !st.Connected || st.Reconnects < 1 || st.Handled["image.activate"] != 1 {
		t.Errorf("status notifications %+v, want connected, reconnected, one image.activate handled", st)
	}
	raw, _ := json.Marshal(d.Status())
	if bytes.Contains(raw, []byte(rabbittest.Password)) {
		t.Errorf("the broker's credentials are in the status: %s", raw)
	}
	stopAndNotify("nova.instance.power_off.end.versioned.json")
}
