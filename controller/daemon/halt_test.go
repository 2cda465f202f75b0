package daemon_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A daemon started on a halted group keeps it halted, says so in status,
// and creates nothing.
func TestDaemonKeepsHaltAndHealAlert(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1100), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms, max_failures: 1}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	env.Sim.AddImage(sim.Image{Name: "gold"})
	env.Sim.FailNextBoots(1)
	if res := grouptest.RunOnce(t, env, g, 30*time.Second); !errors.Is(res.Err, controller.ErrHalted) {
		t.Fatalf("want halted, got %v", res.Err)
	}
	env.Sim.ResetRequests()
	yaml := daemonYAML(strings.Replace(daemonGroup("web", "gold", "m1.small", 3, ""),
		"rollout: {max_surge: 2, max_unavailable: 0, min_ready: 30ms}", "rollout: {max_surge: 1, min_ready: 30ms, max_failures: 1}", 1))
	d := startDaemon(t, env, yaml)
	grouptest.WaitUntil(t, 20*time.Second, "the daemon to report the halt", func() bool {
		st := d.Status().Groups
		return len(st) == 1 && st[0].Halted != "" && st[0].Status.Halted
	})
	if n := grouptest.Creates(env.Sim); n != 0 {
		t.Errorf("the daemon created %d servers for a halted rollout", n)
	}
}
