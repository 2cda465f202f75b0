// Package grouptest holds what the tests of controller and
// controller/daemon share: a fast simulator, a group's configuration, a
// one-shot rebuild against the simulator, and looks at what the simulator
// holds. Nothing outside tests imports it.
package grouptest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// GroupYAML is a configuration of one group on the newest gold image,
// with a fast health check.
func GroupYAML(name string, count int, rollout string) string {
	return fmt.Sprintf(`
groups:
  - name: %s
    count: %d
    image: {name: gold, newest: true}
    flavor: m1.small
    networks: [private]
    rollout: %s
    health:
      http: {port: 8080, path: /healthz}
      interval: 30ms
      timeout: 30ms
      healthy_threshold: 2
      unhealthy_threshold: 3
      grace: 30s
`, name, count, rollout)
}

// ParseGroup parses yaml and returns its first group.
func ParseGroup(t testing.TB, yaml string) config.Group {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg.Groups[0]
}

// FastSim is a simulator whose servers boot, pass their checks and go
// in milliseconds.
func FastSim(seed int64) sim.Options {
	return sim.Options{
		Seed:        seed,
		BootTime:    sim.LogNormal(60*time.Millisecond, 300*time.Millisecond),
		HealthDelay: sim.Fixed(20 * time.Millisecond),
		DeleteTime:  sim.Fixed(30 * time.Millisecond),
	}
}

// Logger logs at info level into the test's output.
func Logger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

// FastOptions are the reconciler's options with short polls and backoff.
func FastOptions() controller.Options {
	return controller.Options{PollInterval: 50 * time.Millisecond, CreateBackoff: 200 * time.Millisecond}
}

// Rebuild runs the group to convergence and fails the test otherwise.
func Rebuild(t testing.TB, env *simtest.Env, g config.Group, opts controller.Options) controller.GroupResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, Logger(t), opts)
	if !res[0].Converged {
		t.Fatalf("group %s did not converge: %v (status %+v)", g.Name, res[0].Err, res[0].Status)
	}
	return res[0]
}

// RunOnce runs a one-shot rebuild of the group for at most patience and
// returns its result, whatever it is.
func RunOnce(t testing.TB, env *simtest.Env, g config.Group, patience time.Duration) controller.GroupResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	return controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, Logger(t), FastOptions())[0]
}

// WaitUntil polls cond until it holds, and fails the test if it does not
// within patience.
func WaitUntil(t testing.TB, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
