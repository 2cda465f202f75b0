package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// compute is a gophercloud client of the simulator, for what an operator
// does to a server behind Phoenix's back.
func compute(t *testing.T, env *simtest.Env) *gophercloud.ServiceClient {
	t.Helper()
	ctx := context.Background()
	ao, eo, _, err := clouds.Parse(clouds.WithCloudName(simtest.CloudName), clouds.WithLocations(env.CloudsFile))
	if err != nil {
		t.Fatal(err)
	}
	provider, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openstack.NewComputeV2(provider, eo)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stopBehindTheBack stops, pauses or suspends a server as an operator (or
// a hypervisor) would, and waits until Nova shows it so.
func stopBehindTheBack(t *testing.T, env *simtest.Env, c *gophercloud.ServiceClient, id, how string) {
	t.Helper()
	ctx := context.Background()
	var err error
	want := map[string]string{"stop": plan.StatusShutoff, "pause": plan.StatusPaused, "suspend": plan.StatusSuspended}[how]
	switch how {
	case "stop":
		err = servers.Stop(ctx, c, id).ExtractErr()
	case "pause":
		err = servers.Pause(ctx, c, id).ExtractErr()
	case "suspend":
		err = servers.Suspend(ctx, c, id).ExtractErr()
	}
	if err != nil {
		t.Fatalf("%s server %s: %v", how, id, err)
	}
	waitUntil(t, 10*time.Second, "the server "+want, func() bool {
		s, ok := env.Sim.Server(id)
		return ok && s.Status == want
	})
}

// A server of a converged group that was stopped, paused or suspended
// outside Phoenix serves nothing: the daemon replaces it within its
// interval and the health check's threshold, as it would a server that
// fails its check — where before it counted as booting for ever.
func TestStoppedServerIsReplaced(t *testing.T) {
	for i, how := range []string{"stop", "pause", "suspend"} {
		t.Run(how, func(t *testing.T) {
			env := simtest.Start(t, fastSim(int64(990+i)), 0)
			gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			const interval = time.Second
			d := startDaemon(t, env, strings.Replace(daemonYAML(daemonGroup("web", "gold", "m1.small", 3, "")), "interval: 1h", "interval: 1s", 1))
			d.converged(t, env.Sim, map[string]string{"web": gold.ID})
			victim := idsOf(env.Sim, "web")[1]
			stopBehindTheBack(t, env, compute(t, env), victim, how)
			stoppedAt := time.Now()

			waitUntil(t, 30*time.Second, "the stopped server replaced", func() bool {
				_, there := env.Sim.Server(victim)
				return !there && len(idsOf(env.Sim, "web")) == 3
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
	env := simtest.Start(t, fastSim(993), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := parseGroup(t, groupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}"))
	rebuild(t, env, g, fastOptions())
	victim := idsOf(env.Sim, "web")[0]
	stopBehindTheBack(t, env, compute(t, env), victim, "stop")

	_, dec, err := controller.Preview(context.Background(), env.Cloud.Services(), g, fastOptions())
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

	res := rebuild(t, env, g, fastOptions())
	if _, there := env.Sim.Server(victim); there || !res.Converged {
		t.Fatalf("after the rebuild: the stopped server is still there (%v), converged %v", there, res.Converged)
	}
	assertFleet(t, env.Sim, g, gold.ID)
}
