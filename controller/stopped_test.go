package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
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

// `phoenix plan` says why a stopped server goes, and a one-shot rebuild
// replaces it.
func TestPreviewAndRebuildReplaceAStoppedServer(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(993), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	victim := grouptest.IDsOf(env.Sim, "web")[0]
	grouptest.StopBehindTheBack(t, env, grouptest.Compute(t, env), victim, "stop")

	_, dec, err := controller.Preview(context.Background(), env.Cloud.Services(), g, grouptest.FastOptions())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range dec.Servers {
		if c.ID == victim {
			found = true
			if c.Kind != plan.KindOld || !strings.Contains(c.Reason, "SHUTOFF, stopped outside Phoenix") {
				t.Errorf("plan shows the stopped server as %s (%q), want it replaced as stopped", c.Kind, c.Reason)
			}
		}
	}
	if !found || dec.Status.Converged {
		t.Errorf("plan: stopped server listed %v, status %+v", found, dec.Status)
	}

	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	if _, there := env.Sim.Server(victim); there || !res.Converged {
		t.Fatalf("after the rebuild: the stopped server is still there (%v), converged %v", there, res.Converged)
	}
	assertFleet(t, env.Sim, g, gold.ID)
}
