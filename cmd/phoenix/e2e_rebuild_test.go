package main

import (
	"fmt"
	"maps"
	"testing"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestEndToEndRebuildInPlaceOnDevcloud rebuilds a group of four in place
// on the development cloud (strategy rebuild): afterwards the same four
// server ids, with the same addresses, run the new image.
func TestEndToEndRebuildInPlaceOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-rb")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	cfg := run.config(t, `
    count: 4
    rollout: {strategy: rebuild, max_surge: 0, max_unavailable: 1}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 1
      grace: 60s
`)

	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 4, imageA, group)
	addresses := func(list []provisioner.Server) map[string]string {
		out := map[string]string{}
		for _, s := range list {
			out[s.ID] = fmt.Sprint(s.Addresses)
		}
		return out
	}
	before := addresses(first)

	waitNextSecond()
	imageB := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "8m")
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 4, imageB, group)
	if got := addresses(after); !maps.Equal(got, before) {
		t.Errorf("servers or addresses changed in a rebuild in place: before %v, after %v", before, got)
	}
}
