package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestEndToEndStoppedServerOnDevcloud stops a server of a converged group
// on the development cloud (`openstack server stop`, os-stop): `phoenix
// plan` says it is to be replaced because it is stopped, and a rebuild
// replaces it with a fresh boot of the same image.
func TestEndToEndStoppedServerOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-stop")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	cfg := run.config(t, `
    count: 3
    rollout: {max_surge: 1, min_ready: 1s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`)
	image := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 3, image, group)

	victim := first[1]
	if err := cloud.StopServer(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		i := slices.IndexFunc(groupServers(t, ctx, cloud, tag), func(s provisioner.Server) bool { return s.ID == victim.ID })
		if i >= 0 && groupServers(t, ctx, cloud, tag)[i].Status == provisioner.StatusShutoff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s never showed SHUTOFF", victim.Name)
		}
		time.Sleep(time.Second) // polling Nova, as an operator would
	}

	plan := onlyGroupPlan(t, phoenix("plan", "--config", cfg, "--output", "json"))
	for _, s := range plan.Servers {
		if s.ID == victim.ID && (s.Action != "replace" || !strings.Contains(s.Reason, "SHUTOFF")) {
			t.Errorf("plan for the stopped server: %s (%s), want replace because it is stopped", s.Action, s.Reason)
		}
	}

	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 3, image, group)
	if slices.ContainsFunc(after, func(s provisioner.Server) bool { return s.ID == victim.ID }) {
		t.Errorf("the stopped server %s is still in the group", victim.Name)
	}
}
