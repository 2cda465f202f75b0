package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// TestEndToEndRebuildInPlaceOnDevcloud rebuilds a group of four in place
// on the development cloud (strategy rebuild): afterwards the same four
// server ids, with the same addresses, run the new image.
func TestEndToEndRebuildInPlaceOnDevcloud(t *testing.T) {
	cloudsFile := os.Getenv("PHOENIX_DEVCLOUD_CLOUDS")
	if cloudsFile == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin := buildPhoenix(t)
	group := "e2e-rb-" + uuid.NewString()[:8]
	imageName := group + "-gold"
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`cloud: devcloud
groups:
  - name: %s
    count: 4
    image: {name: %s, newest: true}
    flavor: m1.small
    networks: [phoenix-net]
    rollout: {strategy: rebuild, max_surge: 0, max_unavailable: 1}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 1
      grace: 60s
`, group, imageName)), 0o600); err != nil {
		t.Fatal(err)
	}
	phoenix := phoenixRunner(t, ctx, bin, cloudsFile)
	cloud, err := openstack.New(ctx, openstack.Options{Cloud: "devcloud", CloudsFile: cloudsFile})
	if err != nil {
		t.Fatal(err)
	}
	glance := glanceClient(t, ctx, cloudsFile)
	tag := controller.GroupTag(group)
	t.Cleanup(func() {
		list, _ := cloud.ListServers(context.Background(), tag)
		for _, s := range list {
			_ = cloud.DeleteServer(context.Background(), s.ID)
		}
	})

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
