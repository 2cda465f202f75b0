package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// A server of a converged group that was stopped, paused or suspended
// outside Phoenix serves nothing: the daemon replaces it within its
// interval and the health check's threshold, as it would a server that
// fails its check — where before it counted as booting for ever.
func TestStoppedServerIsReplaced(t *testing.T) {
	for i, how := range []string{"stop", "pause", "suspend"} {
		t.Run(how, func(t *testing.T) {
			env := simtest.Start(t, grouptest.FastSim(int64(990+i)), 0)
			gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			const interval = time.Second
			d := startDaemon(t, env, strings.Replace(daemonYAML(daemonGroup("web", "gold", "m1.small", 3, "")), "interval: 1h", "interval: 1s", 1))
			d.converged(t, env.Sim, map[string]string{"web": gold.ID})
			victim := grouptest.IDsOf(env.Sim, "web")[1]
			grouptest.StopBehindTheBack(t, env, grouptest.Compute(t, env), victim, how)
			stoppedAt := time.Now()

			grouptest.WaitUntil(t, 30*time.Second, "the stopped server replaced", func() bool {
				_, there := env.Sim.Server(victim)
				return !there && len(grouptest.IDsOf(env.Sim, "web")) == 3
			})
			d.converged(t, env.Sim, map[string]string{"web": gold.ID})
			// interval + health threshold (90ms), with room for a busy
			// machine; a server that counts as booting is never replaced.
			if took := time.Since(stoppedAt); took > interval+10*time.Second {
				t.Errorf("replaced %v after it stopped, want within the interval %v and the health threshold", took, interval)
			}
		})
	}
}
