package controller_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// With backup.every, each volume of the group's servers is snapshotted
// when its newest snapshot is older than that, and not before (a fake
// clock moves the hours).
func TestVolumeSnapshotsOnSchedule(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1800), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, strings.TrimRight(grouptest.GroupYAML("web", 1, "{max_surge: 1, max_unavailable: 0}"), "\n")+
		"\n    backup: {volumes: snapshot, every: 1h, keep: 0}\n")
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	vol := env.Sim.AddVolume(sim.VolumeSpec{Name: "data"})
	if err := env.Sim.AttachVolume(env.Sim.Servers()[0].ID, vol.ID); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	opts := grouptest.FastOptions()
	opts.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), opts)
	defer r.Close()
	scheduled := func() int {
		n := 0
		for _, s := range env.Sim.VolumeSnapshots() {
			if s.VolumeID == vol.ID && s.Metadata[controller.PropKind] == controller.KindScheduled && s.Metadata[controller.PropGroup] == "web" {
				n++
			}
		}
		return n
	}
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {30 * time.Minute, 1}, {31 * time.Minute, 2}, {10 * time.Minute, 2}} {
		mu.Lock()
		now = now.Add(step.advance)
		mu.Unlock()
		if _, err := r.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := scheduled(); got != step.want {
			t.Fatalf("after %s more: %d scheduled snapshots, want %d", step.advance, got, step.want)
		}
	}
}
