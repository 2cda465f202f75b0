package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// steerWorld feeds the steering check samples made up by hand: a group
// g1 of three, steered from t0+1s on.
type steerWorld struct {
	t       *testing.T
	m       *chaosMonitor
	t0      time.Time
	servers []sim.Server
	span    *steerSpan
}

func newSteerWorld(t *testing.T) *steerWorld {
	w := &steerWorld{t: t, t0: time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)}
	w.m = newChaosMonitor(nil, []chaosGroup{{name: "g1", count: 3, surge: 1}}, nil, nil)
	for i := range 3 {
		w.servers = append(w.servers, w.server(fmt.Sprintf("old-%d", i), w.t0.Add(-time.Hour)))
	}
	w.sample(0)
	w.m.startJudging(w.t0)
	w.span = w.m.steer("g1", "held", w.t0.Add(time.Second))
	w.m.judgeSpanFrom(w.span, w.t0.Add(time.Second))
	// Calm for longer than the look back.
	for at := time.Duration(0); at <= 5*time.Second; at += 100 * time.Millisecond {
		w.sample(at)
	}
	return w
}

func (w *steerWorld) server(id string, created time.Time) sim.Server {
	return sim.Server{ID: id, Name: id, Status: "ACTIVE", Healthy: true, ImageID: "old-image", Created: created,
		Tags:     []string{controller.GroupTag("g1")},
		Metadata: map[string]string{controller.MetaCreatedAt: created.Format(time.RFC3339Nano)}}
}

func (w *steerWorld) sample(at time.Duration) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	w.m.steering(w.servers, w.t0.Add(at))
}

// set changes server i's metadata (as Phoenix would: replaced, not
// changed in place).
func (w *steerWorld) set(i int, kv ...string) {
	md := map[string]string{}
	for k, v := range w.servers[i].Metadata {
		md[k] = v
	}
	for j := 0; j < len(kv); j += 2 {
		md[kv[j]] = kv[j+1]
	}
	w.servers[i].Metadata = md
}

func (w *steerWorld) violations(kind string) []string {
	first, _ := w.m.violations()
	var out []string
	for _, v := range first {
		if strings.HasPrefix(v, kind+":") {
			out = append(out, v)
		}
	}
	return out
}

// TestSteeringCheck shows the check can fire, and what excuses a step: a
// create or a removal decided while steered is voluntary unless a failed
// server, a server to spare or an urgent rebuild calls for it.
func TestSteeringCheck(t *testing.T) {
	at := func(w *steerWorld, d time.Duration) string { return w.t0.Add(d).Format(time.RFC3339Nano) }
	t.Run("a create in a calm steered group", func(t *testing.T) {
		w := newSteerWorld(t)
		w.servers = append(w.servers, w.server("new", w.t0.Add(5200*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 1 || !strings.Contains(v[0], "server new created") {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a create after a server failed", func(t *testing.T) {
		w := newSteerWorld(t)
		w.servers[1].Status, w.servers[1].Healthy = "ERROR", false
		w.sample(5100 * time.Millisecond)
		w.servers = append(w.servers, w.server("new", w.t0.Add(5200*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a create decided before the span is judged", func(t *testing.T) {
		w := newSteerWorld(t)
		w.servers = append(w.servers, w.server("new", w.t0.Add(900*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a create after the steering ended", func(t *testing.T) {
		w := newSteerWorld(t)
		w.m.endSteer(w.span, w.t0.Add(5*time.Second))
		w.servers = append(w.servers, w.server("new", w.t0.Add(5200*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a create after an urgent patch", func(t *testing.T) {
		w := newSteerWorld(t)
		w.m.urgent("g1", w.t0.Add(5*time.Second))
		w.servers = append(w.servers, w.server("new", w.t0.Add(5200*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a create judged once the span's start is known", func(t *testing.T) {
		w := newSteerWorld(t)
		late := w.m.steer("g1", "blocked by Prometheus", w.t0.Add(5*time.Second))
		w.m.endSteer(w.span, w.t0.Add(5*time.Second))
		w.servers = append(w.servers, w.server("new", w.t0.Add(5200*time.Millisecond)))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("before the span's start is known: %q", v)
		}
		w.m.judgeSpanFrom(late, w.t0.Add(5100*time.Millisecond))
		w.sample(5400 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 1 || !strings.Contains(v[0], "blocked by Prometheus") {
			t.Errorf("once known: %q", v)
		}
	})
	t.Run("a drain of a serving server", func(t *testing.T) {
		w := newSteerWorld(t)
		w.set(0, controller.MetaPhase, plan.PhaseDraining, controller.MetaPhaseAt, at(w, 5200*time.Millisecond), controller.MetaReason, "image drift")
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 1 || !strings.Contains(v[0], "began draining") {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a drain of a server to spare", func(t *testing.T) {
		w := newSteerWorld(t)
		w.servers = append(w.servers, w.server("new", w.t0.Add(900*time.Millisecond)))
		w.sample(5100 * time.Millisecond)
		w.set(0, controller.MetaPhase, plan.PhaseDraining, controller.MetaPhaseAt, at(w, 5200*time.Millisecond))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a delete of a sick server", func(t *testing.T) {
		w := newSteerWorld(t)
		w.servers[2].Healthy = false
		w.sample(5100 * time.Millisecond)
		w.servers[2].Healthy = true // recovered, but Phoenix had seen it sick
		w.set(2, controller.MetaPhase, plan.PhaseDeleting, controller.MetaPhaseAt, at(w, 5200*time.Millisecond))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("steering"); len(v) != 0 {
			t.Errorf("violations: %q", v)
		}
	})
	t.Run("a protected server", func(t *testing.T) {
		w := newSteerWorld(t)
		w.m.protect(w.servers[0])
		w.m.protect(w.servers[1])
		w.sample(5100 * time.Millisecond)
		if v := w.violations("protected"); len(v) != 0 {
			t.Fatalf("untouched: %q", v)
		}
		w.m.compromised(w.servers[1].ID)
		w.servers = w.servers[:1]
		w.sample(5200 * time.Millisecond)
		if v := w.violations("protected"); len(v) != 0 {
			t.Fatalf("the compromised one gone: %q", v)
		}
		w.set(0, controller.MetaPhase, plan.PhaseDraining, controller.MetaPhaseAt, at(w, 5250*time.Millisecond))
		w.sample(5300 * time.Millisecond)
		if v := w.violations("protected"); len(v) != 1 || !strings.Contains(v[0], "protected server old-0") {
			t.Errorf("drained: %q", v)
		}
	})
}
