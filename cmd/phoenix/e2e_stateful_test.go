package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestEndToEndStatefulOnDevcloud rebuilds a group of one with a data
// volume on the development cloud (real Nova and Cinder): the volume is
// placed on the first server, then moves to the replacement, which runs
// the new image; the old server is gone and a snapshot of the volume taken
// before it moved exists.
func TestEndToEndStatefulOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-st")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	cfg := run.config(t, fmt.Sprintf(`
    count: 1
    rollout: {max_surge: 1, max_unavailable: 1, progress_deadline: 3m}
    stateful: {volumes: {name: %s-data}}
    backup: {volumes: snapshot, keep: 2}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 1
      grace: 60s
`, group))
	vol, err := cloud.CreateVolume(ctx, group+"-data", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		list, _ := cloud.ListServers(bg, tag)
		for _, s := range list {
			_ = cloud.DeleteServer(bg, s.ID)
		}
		snaps, _ := cloud.VolumeSnapshotsWith(bg, map[string]string{controller.PropGroup: group})
		for _, s := range snaps {
			_ = cloud.DeleteVolumeSnapshot(bg, s.ID)
		}
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			if cloud.DeleteVolume(bg, vol.ID) == nil {
				return
			}
		}
	})
	holder := func() provisioner.Server {
		t.Helper()
		list := groupServers(t, ctx, cloud, tag)
		if len(list) != 1 {
			t.Fatalf("the group holds %d servers, want 1", len(list))
		}
		v, err := cloud.Volume(ctx, vol.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !v.AttachedTo(list[0].ID) || v.Status != provisioner.VolumeInUse {
			t.Fatalf("volume %s is %s, attached to %v; want in use on %s", vol.ID, v.Status, v.Attachments, list[0].Name)
		}
		return list[0]
	}

	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := holder()
	if first.ImageID != imageA {
		t.Fatalf("first server on %s, want %s", first.ImageID, imageA)
	}
	waitNextSecond()
	imageB := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "8m")
	second := holder()
	if second.ID == first.ID || second.ImageID != imageB {
		t.Fatalf("after the rebuild the volume is on %s (image %s), want a new server on %s", second.Name, second.ImageID, imageB)
	}
	snaps, err := cloud.VolumeSnapshotsWith(ctx, map[string]string{controller.PropGroup: group, controller.PropServer: first.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Status != provisioner.VolumeAvailable || snaps[0].Metadata[controller.PropKind] != controller.KindPreHandover {
		t.Errorf("snapshots of the volume taken when it left %s: %+v, want one available pre-handover snapshot", first.Name, snaps)
	}
}
