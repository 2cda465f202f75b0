package main

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestEndToEndProtectedOnDevcloud: a group of three on image A; the
// operator protects one server with the openstack CLI itself (up.sh
// installs it), not through Phoenix; image B is published and the real
// phoenix binary rebuilds. The protected server is left as it is — same
// server, image A — and the other two run image B.
func TestEndToEndProtectedOnDevcloud(t *testing.T) {
	t.Parallel() // with the other scenarios: each has a group of its own
	run := startDevcloudRun(t, "e2e-pr")
	ctx, phoenix, cloud, glance, group, imageName, tag := run.ctx, run.phoenix, run.cloud, run.glance, run.group, run.image, run.tag
	osc, err := exec.LookPath("openstack")
	if err != nil {
		t.Fatalf("the openstack CLI (examples/devcloud/up.sh installs python3-openstackclient): %v", err)
	}
	// Both replacements at once: the run stays short.
	cfg := run.config(t, `
    count: 3
    rollout: {max_surge: 2, min_ready: 1s}
    health:
      http: {port: 18080, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`)
	began := time.Now()
	imageA := publishImage(t, ctx, glance, imageName)
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 3, imageA, group)
	t.Logf("built on image A in %v", time.Since(began).Round(time.Second))

	kept := first[0]
	cli := exec.CommandContext(ctx, osc, "server", "set", "--property", controller.MetaProtected+"=true", kept.ID)
	cli.Env = append(os.Environ(), "OS_CLIENT_CONFIG_FILE="+run.cloudsFile, "OS_CLOUD=devcloud")
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("openstack server set: %v\n%s", err, out)
	}

	waitNextSecond() // Glance's created_at has second precision
	imageB := publishImage(t, ctx, glance, imageName)
	before := onlyGroupPlan(t, phoenix("plan", "--config", cfg, "--output", "json"))
	if before.Protected != 1 || before.Replace != 2 || before.Image.ID != imageB {
		t.Errorf("plan: %d protected, %d to replace towards %s; want 1 protected, 2 towards image B %s", before.Protected, before.Replace, before.Image.ID, imageB)
	}
	for _, s := range before.Servers {
		if (s.ID == kept.ID) != (s.Action == "protected") {
			t.Errorf("plan for %s: %s (%s)", s.Name, s.Action, s.Reason)
		}
	}

	rebuilt := time.Now()
	phoenix("rebuild", "--config", cfg, "--all", "--poll", "1s", "--timeout", "5m")
	t.Logf("rebuilt around the protected server in %v", time.Since(rebuilt).Round(time.Second))
	after := groupServers(t, ctx, cloud, tag)
	if len(after) != 3 {
		t.Fatalf("the group holds %d servers after the rebuild, want 3", len(after))
	}
	var moved []provisioner.Server
	for _, s := range after {
		if s.ID == kept.ID {
			if s.ImageID != imageA || s.Status != provisioner.StatusActive || s.Metadata[controller.MetaProtected] != "true" {
				t.Errorf("the protected server %s: image %s, %s, protected %q; want image A %s, ACTIVE, true",
					s.Name, s.ImageID, s.Status, s.Metadata[controller.MetaProtected], imageA)
			}
			continue
		}
		if slices.ContainsFunc(first, func(f provisioner.Server) bool { return f.ID == s.ID }) {
			t.Errorf("server %s of image A, not protected, survived the rebuild", s.Name)
		}
		moved = append(moved, s)
	}
	if len(moved) != 2 {
		t.Fatalf("the protected server %s is gone from the group", kept.ID)
	}
	assertGroup(t, moved, 2, imageB, group)

	done := onlyGroupPlan(t, phoenix("plan", "--config", cfg, "--output", "json"))
	if done.Protected != 1 || done.Replace != 0 || done.Create != 0 {
		t.Errorf("plan after the rebuild: %d protected, %d to replace, %d to create; want 1, 0, 0", done.Protected, done.Replace, done.Create)
	}
}
