package controller_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// imagesOf maps the group's live servers to their images.
func imagesOf(s *sim.Sim, group string) map[string]string {
	out := map[string]string{}
	for _, srv := range s.Servers() {
		if grouptest.GroupOf(srv) == group && !srv.Deleting {
			out[srv.ID] = srv.ImageID
		}
	}
	return out
}

// A hold is recorded on the servers: a rebuild (any Phoenix, a restart)
// starts nothing while it holds, a compromised server still goes, and
// once released the rollout goes on. (Heal while held: plan's tests.)
func TestHoldDefersUntilReleased(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1601), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := grouptest.IDsOf(env.Sim, "web")
	ctx := context.Background()
	cloud := env.Cloud.Services()

	n, err := controller.Hold(ctx, cloud, g, "alice@ops", "release freeze", time.Now())
	if err != nil || n != 3 {
		t.Fatalf("hold: %d servers, %v", n, err)
	}
	patched := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
	env.Sim.ResetRequests()
	for run := range 2 { // the second run is a restart: only the record holds
		res := grouptest.RunOnce(t, env, g, 30*time.Second)
		if !errors.Is(res.Err, controller.ErrDeferred) || !strings.Contains(res.Err.Error(), "held: by alice@ops") || !strings.Contains(res.Err.Error(), "release freeze") {
			t.Fatalf("run %d: want a deferral naming who held it and why, got %v", run, res.Err)
		}
		if res.Status.Deferred != 3 || grouptest.Creates(env.Sim) != 0 {
			t.Fatalf("run %d: %d deferred, %d creates; want 3 and none", run, res.Status.Deferred, grouptest.Creates(env.Sim))
		}
	}
	if got := grouptest.IDsOf(env.Sim, "web"); !slices.Equal(got, old) {
		t.Fatalf("servers touched while held: %v, want %v", got, old)
	}

	// A compromised server still goes, and its replacement carries the
	// hold from its create.
	if err := cloud.Servers.SetServerMetadata(ctx, old[1], map[string]string{controller.MetaCompromised: "IDS alert"}); err != nil {
		t.Fatal(err)
	}
	res := grouptest.RunOnce(t, env, g, 30*time.Second)
	if !errors.Is(res.Err, controller.ErrDeferred) {
		t.Fatalf("after heal: %v", res.Err)
	}
	imgs := imagesOf(env.Sim, "web")
	if _, ok := imgs[old[1]]; ok || len(imgs) != 3 {
		t.Fatalf("the compromised server was not replaced: %v", imgs)
	}
	for id, img := range imgs {
		if !slices.Contains(old, id) {
			if img != patched.ID {
				t.Errorf("the replacement %s runs %s, want the desired %s", id, img, patched.ID)
			}
			if srv, _ := env.Sim.Server(id); srv.Metadata[controller.MetaHeld] == "" {
				t.Errorf("the replacement %s does not carry the hold: %v", id, srv.Metadata)
			}
		}
	}

	if _, err := controller.Release(ctx, cloud, g); err != nil {
		t.Fatal(err)
	}
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	for id, img := range imagesOf(env.Sim, "web") {
		if img != patched.ID {
			t.Errorf("server %s still on %s after the release", id, img)
		}
	}
}

// A protected server — set as the openstack CLI sets it — is left as it
// is while the group converges around it; a compromised one goes anyway.
func TestProtectedServerIsLeftAsItIs(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1602), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 3, "{max_surge: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := grouptest.IDsOf(env.Sim, "web")
	ctx := context.Background()
	if err := env.Cloud.Services().Servers.SetServerMetadata(ctx, old[0], map[string]string{controller.MetaProtected: "true"}); err != nil {
		t.Fatal(err)
	}
	patched := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})
	res := grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	if res.Status.Protected != 1 {
		t.Errorf("status %+v, want one protected server", res.Status)
	}
	imgs := imagesOf(env.Sim, "web")
	if len(imgs) != 3 || imgs[old[0]] == "" || imgs[old[0]] == patched.ID {
		t.Fatalf("servers %v: want the protected %s left on its image beside two new ones", imgs, old[0])
	}
	for id, img := range imgs {
		if id != old[0] && img != patched.ID {
			t.Errorf("server %s on %s, want %s", id, img, patched.ID)
		}
	}

	if err := env.Cloud.Services().Servers.SetServerMetadata(ctx, old[0], map[string]string{controller.MetaCompromised: "IDS alert"}); err != nil {
		t.Fatal(err)
	}
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	if _, ok := imagesOf(env.Sim, "web")[old[0]]; ok {
		t.Fatalf("the compromised server %s is still there although protected", old[0])
	}
}

// A rebuild of named servers replaces exactly those.
func TestRebuildNamedServers(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1603), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 4, "{max_surge: 1, min_ready: 30ms}"))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := grouptest.IDsOf(env.Sim, "web")
	opts := grouptest.FastOptions()
	opts.Forces = []plan.Force{{Before: time.Now(), Servers: []string{old[1], old[3]}, Reason: "named"}}
	grouptest.Rebuild(t, env, g, opts)
	now := grouptest.IDsOf(env.Sim, "web")
	for i, id := range old {
		if slices.Contains(now, id) != (i == 0 || i == 2) {
			t.Errorf("server %s (%d): still there %v", id, i, slices.Contains(now, id))
		}
	}
	if len(now) != 4 {
		t.Errorf("%d servers, want 4", len(now))
	}
}

// Outside every window no replacement starts; the plan says when the next
// opens; inside it, the rollout goes.
func TestMaintenanceWindow(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1604), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	opens := time.Now().UTC().Add(3 * time.Hour).Truncate(time.Minute)
	window := fmt.Sprintf("daily %s-%s UTC", opens.Format("15:04"), opens.Add(time.Hour).Format("15:04"))
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("web", 2, fmt.Sprintf("{max_surge: 1, min_ready: 30ms, windows: [%q]}", window)))
	// The first build brings the group to count: no replacement.
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Minute)})

	res := grouptest.RunOnce(t, env, g, 30*time.Second)
	if !errors.Is(res.Err, controller.ErrDeferred) || !strings.Contains(res.Err.Error(), opens.Format(time.RFC3339)) {
		t.Fatalf("want a deferral naming the window's opening %s, got %v", opens.Format(time.RFC3339), res.Err)
	}
	if !res.Status.NextWindow.Equal(opens) {
		t.Errorf("next window %s, want %s", res.Status.NextWindow, opens)
	}
	img, d, err := controller.Preview(context.Background(), env.Cloud.Services(), g, controller.Options{})
	if err != nil || img.ID != patched.ID || d.Status.Deferred != 2 {
		t.Fatalf("preview: %v, %+v", err, d.Status)
	}

	// Inside the window (its clock moved on).
	opts := grouptest.FastOptions()
	shift := opens.Add(10 * time.Minute).Sub(time.Now())
	opts.Now = func() time.Time { return time.Now().Add(shift) }
	grouptest.Rebuild(t, env, g, opts)
	for id, img := range imagesOf(env.Sim, "web") {
		if img != patched.ID {
			t.Errorf("server %s on %s after the window opened", id, img)
		}
	}
}
