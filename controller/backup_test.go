package controller_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

const snapshotTime = 300 * time.Millisecond

func backupSim(seed int64) sim.Options {
	o := grouptest.FastSim(seed)
	o.SnapshotTime = sim.Fixed(snapshotTime)
	return o
}

// checkSnapshotsBeforeDeletes reads the simulator's request log: every
// server delete comes after that server's one createImage, by at least
// the time the snapshot took to become active.
func checkSnapshotsBeforeDeletes(t *testing.T, s *sim.Sim, wantDeletes int) {
	t.Helper()
	snapped := map[string][]time.Time{}
	deletes := 0
	for _, r := range s.Requests() {
		if r.Service != "compute" || r.Status >= 300 || r.Status == 0 {
			continue
		}
		rest, ok := strings.CutPrefix(r.Path, "/compute/v2.1/servers/")
		if !ok {
			continue
		}
		id, action, _ := strings.Cut(rest, "/")
		switch {
		case r.Method == "POST" && action == "action":
			snapped[id] = append(snapped[id], r.Time)
		case r.Method == "DELETE" && action == "":
			deletes++
			times := snapped[id]
			if len(times) == 0 {
				t.Errorf("server %s was deleted without a snapshot", id)
			} else if gap := r.Time.Sub(times[0]); gap < snapshotTime {
				t.Errorf("server %s was deleted %v after its snapshot began, before it could be active (%v)", id, gap, snapshotTime)
			}
		}
	}
	for id, times := range snapped {
		if len(times) != 1 {
			t.Errorf("server %s was snapshotted %d times", id, len(times))
		}
	}
	if deletes < wantDeletes {
		t.Errorf("%d deletes seen, want at least %d", deletes, wantDeletes)
	}
}

func TestSnapshotBeforeDeleteAndRetention(t *testing.T) {
	env := simtest.Start(t, backupSim(980), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	g := grouptest.ParseGroup(t, grouptest.GroupYAML("db", 2, "{max_surge: 1, min_ready: 30ms}")+"    backup: {snapshot_before_delete: true, keep: 3}\n")
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	env.Sim.ResetRequests()
	golds := 1
	for range 5 {
		env.Sim.AddImage(sim.Image{Name: "gold"})
		golds++
		grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	}
	checkSnapshotsBeforeDeletes(t, env.Sim, 10)

	var snaps, others []sim.Image
	for _, img := range env.Sim.Images() {
		if img.Properties[controller.PropKind] == controller.KindPreDelete {
			snaps = append(snaps, img)
		} else {
			others = append(others, img)
		}
	}
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots of the group remain, want keep 3", len(snaps))
	}
	if len(others) != golds {
		t.Errorf("%d other images remain, want the %d gold images untouched", len(others), golds)
	}
	// The 3 newest of the 10 taken.
	var taken []time.Time
	for _, r := range env.Sim.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/action") {
			taken = append(taken, r.Time)
		}
	}
	oldestKept := snaps[0].Created
	if len(taken) != 10 || oldestKept.Before(taken[6].Add(-time.Millisecond)) {
		t.Errorf("%d snapshots taken; the oldest kept was made at %v, want one of the 3 newest (from %v)", len(taken), oldestKept, taken[len(taken)-3])
	}
}

// Killing the controller during snapshots and deletes, at random moments:
// never two snapshots of a server, never a delete before its snapshot.
func TestSnapshotSurvivesRestarts(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 13))
			env := simtest.Start(t, backupSim(int64(990+seed)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			g := grouptest.ParseGroup(t, grouptest.GroupYAML("db", 3, "{max_surge: 2, min_ready: 30ms}")+"    backup: {snapshot_before_delete: true, keep: 0}\n")
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			env.Sim.AddImage(sim.Image{Name: "gold"})
			env.Sim.ResetRequests()
			for range 1 + rng.IntN(4) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(200+rng.IntN(900))*time.Millisecond)
				controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())
				cancel()
			}
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			checkSnapshotsBeforeDeletes(t, env.Sim, 3)
		})
	}
}
