package daemon_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A fleet's first build: no image carries the stage's tag yet, so prod
// has no image. That is a wait for staging, shown as such — not a halt,
// not an error, no halted notice — and prod builds on the image staging
// promotes, as soon as it does.
func TestDaemonLaterStageWaitsForTheFirstPromotion(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(811), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold-1", Tags: []string{"gold"}, Created: time.Now().Add(-time.Hour)})
	// Staging's wait is the longer of promote.after and rollout.watch.
	stage := func(name, tags, extra string) string {
		g := strings.Replace(daemonGroup(name, "unused", "m1.small", 2, extra), "{name: unused, newest: true}", "{tags: ["+tags+"], newest: true}", 1)
		return strings.Replace(g, "min_ready: 30ms}", "min_ready: 30ms, watch: 0s}", 1)
	}
	sink := &recordingSink{}
	d := startDaemon(t, env, daemonYAML(
		stage("staging", "gold", "    promote: {tag: staged-ok, after: 1s}\n"),
		stage("prod", "gold, staged-ok", "")), func(o *daemon.Options) { o.Sink = sink })

	var waiting daemon.GroupStatus
	grouptest.WaitUntil(t, 30*time.Second, "prod to say it waits for staging", func() bool {
		for _, g := range d.Status().Groups {
			if g.Group == "prod" && strings.Contains(g.Status.Waiting, "no image for the selector carries tag staged-ok yet; group staging adds it") {
				waiting = g
				return true
			}
		}
		return false
	})
	if waiting.Halted != "" || waiting.LastError != "" {
		t.Errorf("prod, waiting for staging, shows halted %q, error %q", waiting.Halted, waiting.LastError)
	}
	d.converged(t, env.Sim, map[string]string{"staging": gold.ID, "prod": gold.ID})
	for _, e := range sink.all() {
		if e.Group == "prod" && (e.Type == controller.EventHalted || e.Type == controller.EventError) {
			t.Errorf("prod announced %s while it waited for staging: %s", e.Type, e.Reason+e.Message)
		}
	}
}

// recordingSink keeps every event the daemon emits.
type recordingSink struct {
	mu     sync.Mutex
	events []controller.Event
}

func (s *recordingSink) Emit(e controller.Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *recordingSink) all() []controller.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]controller.Event(nil), s.events...)
}
