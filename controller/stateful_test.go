package controller_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/internal/grouptest"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// statefulGroup is a group of count whose data volumes are the ones
// named data-*, snapshotted before they move, keeping keep snapshots.
func statefulGroup(t *testing.T, count, keep int) string {
	return strings.TrimRight(grouptest.GroupYAML("db", count, "{max_surge: 1, max_unavailable: 1, min_ready: 30ms, progress_deadline: 20s}"), "\n") +
		fmt.Sprintf("\n    stateful: {volumes: {name: data-*}}\n    backup: {volumes: snapshot, keep: %d}\n", keep)
}

// A group of one with a data volume is rebuilt four times: each time the
// new server runs the new image with the same volume, the old server is
// gone, a snapshot of the volume was taken before it moved, and the
// simulator's attachment history shows the volume never on two servers
// at once. Retention keeps the two newest of Phoenix's snapshots; one
// Phoenix did not take is untouched, and so is a volume it does not
// select.
func TestStatefulHandoverMovesTheVolume(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1500), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
	logs := env.Sim.AddVolume(sim.VolumeSpec{Name: "logs-db"})
	g := grouptest.ParseGroup(t, statefulGroup(t, 1, 2))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	holder := func() sim.Server {
		t.Helper()
		servers := env.Sim.Servers()
		if len(servers) != 1 {
			t.Fatalf("%d servers, want 1", len(servers))
		}
		v, _ := env.Sim.VolumeByID(data.ID)
		if v.ServerID != servers[0].ID || v.Status != "in-use" {
			t.Fatalf("volume %s is %s on %q, want in-use on the group's server %s", data.ID, v.Status, v.ServerID, servers[0].ID)
		}
		return servers[0]
	}
	first := holder()
	foreign, err := env.Cloud.SnapshotVolume(context.Background(), data.ID, "operator-backup", map[string]string{"owner": "ops"})
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	taken := map[string]time.Time{} // every Phoenix snapshot of the volume ever seen
	for range 4 {
		img := env.Sim.AddImage(sim.Image{Name: "gold"})
		images = append(images, img.ID)
		before := holder()
		grouptest.Rebuild(t, env, g, grouptest.FastOptions())
		now := holder()
		if now.ID == before.ID || now.ImageID != img.ID {
			t.Fatalf("after the rollout the volume is on %s (image %s), want a new server on %s", now.ID, now.ImageID, img.ID)
		}
		if _, ok := env.Sim.Server(before.ID); ok {
			t.Errorf("the old server %s is still there", before.ID)
		}
		for _, s := range env.Sim.VolumeSnapshots() {
			if s.VolumeID == data.ID && s.Metadata[controller.PropGroup] == "db" {
				taken[s.ID] = s.Created
			}
		}
	}
	_ = first

	// Never on two servers: attachments of the volume never overlap.
	var spans []sim.AttachmentRecord
	for _, a := range env.Sim.AttachmentHistory() {
		if a.VolumeID == data.ID {
			spans = append(spans, a)
		}
	}
	if len(spans) != 5 {
		t.Errorf("%d attachments of the data volume, want 5 (placed once, moved four times)", len(spans))
	}
	for i := 1; i < len(spans); i++ {
		if prev := spans[i-1]; prev.Released.IsZero() || spans[i].Requested.Before(prev.Released) {
			t.Errorf("the volume was attached to %s at %s while still held by %s (released %s)",
				spans[i].ServerID, spans[i].Requested, prev.ServerID, prev.Released)
		}
	}
	var mine int
	for _, s := range env.Sim.VolumeSnapshots() {
		if s.VolumeID == logs.ID {
			t.Errorf("the unselected volume %s was snapshotted", logs.ID)
		}
		if s.VolumeID == data.ID && s.Metadata[controller.PropGroup] == "db" {
			mine++
			if s.Metadata[controller.PropKind] != controller.KindPreHandover {
				t.Errorf("snapshot %s has kind %q, want %s", s.ID, s.Metadata[controller.PropKind], controller.KindPreHandover)
			}
		}
	}
	kept := false
	for _, s := range env.Sim.VolumeSnapshots() {
		kept = kept || s.ID == foreign.ID
	}
	if !kept {
		t.Errorf("the operator's own snapshot %s of the volume was deleted", foreign.ID)
	}
	newest := slices.SortedFunc(maps.Keys(taken), func(a, b string) int { return taken[b].Compare(taken[a]) })
	for _, s := range env.Sim.VolumeSnapshots() {
		if s.Metadata[controller.PropGroup] == "db" && !slices.Contains(newest[:min(2, len(newest))], s.ID) {
			t.Errorf("snapshot %s remains, not one of the two newest of %d taken", s.ID, len(newest))
		}
	}
	if mine != 2 {
		t.Errorf("%d of Phoenix's snapshots of the data volume remain after four rollouts, want 2 (backup.keep)", mine)
	}
	if v, _ := env.Sim.VolumeByID(logs.ID); v.ServerID != "" || v.Metadata[controller.PropGroup] != "" {
		t.Errorf("the unselected volume was touched: %+v", v)
	}
}

// A new server that fails its health check once the volume moved to it:
// the volume goes back to the old server, which runs again, and the
// rollout halts and says why.
func TestStatefulHandoverRollsBack(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1501), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
	g := grouptest.ParseGroup(t, strings.Replace(statefulGroup(t, 1, 3), "progress_deadline: 20s", "progress_deadline: 2s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := env.Sim.Servers()[0]

	bad := env.Sim.AddImage(sim.Image{Name: "gold"})
	stopBreaking := breakWhenDataArrives(env.Sim, data.ID, bad.ID)
	log := &controller.EventLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, log, grouptest.Logger(t), grouptest.FastOptions())[0]
	stopBreaking()
	if !errors.Is(res.Err, controller.ErrHalted) {
		t.Fatalf("rebuild ended with %v, want halted", res.Err)
	}
	v, _ := env.Sim.VolumeByID(data.ID)
	back, ok := env.Sim.Server(old.ID)
	if !ok || v.ServerID != old.ID || back.Status != "ACTIVE" || back.ImageID != gold.ID {
		t.Errorf("volume on %q (%s), old server %+v: want the volume back on the old server, running", v.ServerID, v.Status, back)
	}
	for _, a := range env.Sim.AttachmentHistory() {
		for _, b := range env.Sim.AttachmentHistory() {
			if a.VolumeID == b.VolumeID && a != b && a.Requested.Before(b.Requested) && (a.Released.IsZero() || b.Requested.Before(a.Released)) {
				t.Errorf("volume %s on %s and %s at once", a.VolumeID, a.ServerID, b.ServerID)
			}
		}
	}
	halted, rolledBack := false, false
	for _, e := range log.Events() {
		halted = halted || e.Type == controller.EventHalted
		rolledBack = rolledBack || e.Type == controller.EventHandover && strings.Contains(e.Message, "rolled back")
	}
	if !halted || !rolledBack {
		t.Errorf("events: halted %v, handover rolled back %v; want both", halted, rolledBack)
	}
}

// With on_failure rollback, the same failed handover rolls the group back
// instead: the volume back on the old server, the new image rejected, and
// the group converged on the image it ran before.
func TestStatefulHandoverFailureRollsTheGroupBack(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1505), 0)
	gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
	g := grouptest.ParseGroup(t, strings.Replace(statefulGroup(t, 1, 3), "progress_deadline: 20s", "progress_deadline: 2s, on_failure: rollback", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := env.Sim.Servers()[0]

	bad := env.Sim.AddImage(sim.Image{Name: "gold"})
	stopBreaking := breakWhenDataArrives(env.Sim, data.ID, bad.ID)
	defer stopBreaking()
	log := &controller.EventLog{}
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), log, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	d := runUntil(t, r, 30*time.Second, "the rollback", func(d plan.Decision) bool {
		return d.Status.Halted || d.Status.RollingBack && d.Status.Converged
	})
	if d.Status.Halted {
		t.Fatalf("halted: %v; want a rollback", r.Stuck())
	}
	if img, why := r.Rejected(); img != bad.ID || !strings.Contains(why, "handover") {
		t.Errorf("rejected %q (%q), want %s for its failed handover", img, why, bad.ID)
	}
	v, _ := env.Sim.VolumeByID(data.ID)
	servers := env.Sim.Servers()
	if len(servers) != 1 || servers[0].ID != old.ID || v.ServerID != old.ID || servers[0].ImageID != gold.ID || !servers[0].Healthy {
		t.Errorf("servers %+v, volume on %q: want only the old server, healthy on %s, holding the volume", servers, v.ServerID, gold.ID)
	}
}

// A rollback (here by hand) while a volume is on its way to a server of
// the image rolled back from: that handover fails, the volume goes back to
// the old server, and the rollback goes on — the failure is the rejected
// image's, not the rollback's, and must not halt it. So too when the
// rejected server is gone before the volume is back home (the plan removes
// it as old; chaos seed 81 found the rollback halted then).
func TestStatefulRollbackDuringAHandover(t *testing.T) {
	for i, vanishes := range []bool{false, true} {
		t.Run(fmt.Sprintf("new server deleted %v", vanishes), func(t *testing.T) {
			t.Parallel()
			env := simtest.Start(t, grouptest.FastSim(int64(1507+i)), 0)
			gold := env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
			g := grouptest.ParseGroup(t, strings.Replace(statefulGroup(t, 1, 3), "progress_deadline: 20s", "progress_deadline: 2s", 1))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			old := env.Sim.Servers()[0]

			bad := env.Sim.AddImage(sim.Image{Name: "gold"})
			stopBreaking := breakWhenDataArrives(env.Sim, data.ID, bad.ID)
			defer stopBreaking()
			r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
			defer r.Close()
			runUntil(t, r, 30*time.Second, "the volume on the new image's server", func(plan.Decision) bool {
				v, _ := env.Sim.VolumeByID(data.ID)
				s, ok := env.Sim.Server(v.ServerID)
				return ok && s.ImageID == bad.ID
			})
			if _, err := controller.Rollback(context.Background(), env.Cloud.Services(), g, gold.ID); err != nil {
				t.Fatal(err)
			}
			if vanishes {
				var to string
				runUntil(t, r, 30*time.Second, "the volume off the new server on its way back", func(plan.Decision) bool {
					v, _ := env.Sim.VolumeByID(data.ID)
					to = v.Metadata[controller.PropHandoverTo]
					return v.Metadata[controller.PropHandoverStep] == "rollback" && v.ServerID != to
				})
				if err := env.Cloud.DeleteServer(context.Background(), to); err != nil && !strings.Contains(err.Error(), "404") {
					t.Fatalf("delete the rejected server %s: %v", to, err)
				}
			}
			d := runUntil(t, r, 30*time.Second, "the rollback", func(d plan.Decision) bool {
				return d.Status.Halted || d.Status.RollingBack && d.Status.Converged
			})
			if d.Status.Halted {
				t.Fatalf("halted: %v; want the rollback to go on", r.Stuck())
			}
			v, _ := env.Sim.VolumeByID(data.ID)
			servers := env.Sim.Servers()
			if len(servers) != 1 || servers[0].ID != old.ID || v.ServerID != old.ID || servers[0].ImageID != gold.ID || !servers[0].Healthy {
				t.Errorf("servers %+v, volume on %q: want only the old server, healthy on %s, holding the volume", servers, v.ServerID, gold.ID)
			}
		})
	}
}

// Kill-and-restart at random points of a handover: a controller is
// stopped when the volume's record shows a step chosen by the seed, or at
// a random moment, and a fresh one finishes the rollout. The volume ends
// on exactly one server of the group, on the newest image; it was never
// on two servers, never left detached, and snapshotted once per move.
func TestStatefulHandoverSurvivesRestarts(t *testing.T) {
	steps := []string{"stop", "snapshot", "detach", "attach", "gate", ""}
	for seed := range uint64(24) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 5))
			env := simtest.Start(t, grouptest.FastSim(int64(1600+seed)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
			g := grouptest.ParseGroup(t, statefulGroup(t, 1, 0))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})

			ctx, kill := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())
			}()
			at := steps[rng.IntN(len(steps))]
			if at == "" {
				time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
			} else {
				grouptest.WaitUntil(t, 20*time.Second, "the handover to reach "+at, func() bool {
					v, _ := env.Sim.VolumeByID(data.ID)
					return v.Metadata[controller.PropHandoverStep] == at
				})
			}
			kill()
			<-done
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())

			servers := env.Sim.Servers()
			v, _ := env.Sim.VolumeByID(data.ID)
			if len(servers) != 1 || v.ServerID != servers[0].ID || v.Status != "in-use" || servers[0].ImageID != patched.ID {
				t.Fatalf("killed at %q: %d servers, volume %s on %q: want it in use on the one server, on the new image", at, len(servers), v.Status, v.ServerID)
			}
			if v.Metadata[controller.PropHandoverStep] != "" {
				t.Errorf("killed at %q: the handover record %q is left on the volume", at, v.Metadata[controller.PropHandoverStep])
			}
			if err := env.Sim.CheckExclusiveAttachments(); err != nil {
				t.Errorf("killed at %q: %v", at, err)
			}
			perServer := map[string]int{}
			for _, s := range env.Sim.VolumeSnapshots() {
				if s.Status != "error" {
					perServer[s.Metadata[controller.PropServer]]++
				}
			}
			for srv, n := range perServer {
				if n > 1 {
					t.Errorf("killed at %q: the volume was snapshotted %d times when leaving server %s", at, n, srv)
				}
			}
		})
	}
}

// A stateful selector that selects no volume at first contact stops the
// group, naming the field, before any server is created.
func TestStatefulSelectorMatchingNothingTouchesNothing(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1700), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	env.Sim.AddVolume(sim.VolumeSpec{Name: "logs-db"})
	g := grouptest.ParseGroup(t, statefulGroup(t, 2, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())[0]
	if !errors.Is(res.Err, controller.ErrStuck) || !strings.Contains(res.Err.Error(), "stateful.volumes") {
		t.Fatalf("result %v, want stuck naming stateful.volumes", res.Err)
	}
	if grouptest.Creates(env.Sim) != 0 || len(env.Sim.Servers()) != 0 {
		t.Errorf("servers were created")
	}
	for _, v := range env.Sim.Volumes() {
		if len(v.Metadata) != 0 {
			t.Errorf("volume %s was marked: %v", v.Name, v.Metadata)
		}
	}
}

// Behind a pool, an old server started again by a rolled-back handover
// takes requests again: it is put back as a member at full weight.
func TestStatefulRollbackBehindPoolServesAgain(t *testing.T) {
	env := simtest.Start(t, grouptest.FastSim(1502), 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	lb, err := env.Sim.AddLoadBalancer(sim.LoadBalancerSpec{Name: "lb", PoolName: "pool"})
	if err != nil {
		t.Fatal(err)
	}
	data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
	yaml := strings.Replace(statefulGroup(t, 1, 3), "progress_deadline: 20s", "progress_deadline: 2s", 1) +
		"    traffic: {octavia: {pool: pool, protocol_port: 8080, drain: 0s}}\n"
	g := grouptest.ParseGroup(t, yaml)
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	old := env.Sim.Servers()[0]
	if grouptest.MemberOf(env.Sim, lb.PoolID, old.Address) == "" {
		t.Fatalf("the first server is not a member of the pool")
	}

	bad := env.Sim.AddImage(sim.Image{Name: "gold"})
	stopBreaking := breakWhenDataArrives(env.Sim, data.ID, bad.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())[0]
	stopBreaking()
	if !errors.Is(res.Err, controller.ErrHalted) {
		t.Fatalf("rebuild ended with %v, want halted", res.Err)
	}
	// The halted group is reconciled on (as the daemon does): the old
	// server rejoins the pool.
	r := controller.NewGroupReconciler(g, env.Cloud.Services(), nil, grouptest.Logger(t), grouptest.FastOptions())
	defer r.Close()
	grouptest.WaitUntil(t, 10*time.Second, "the old server to serve in the pool again", func() bool {
		_, _ = r.Reconcile(context.Background())
		for _, m := range env.Sim.Members(lb.PoolID) {
			if m.Address == old.Address && m.Weight > 0 {
				return true
			}
		}
		return false
	})
}

// breakWhenDataArrives makes the application of a server on image fail
// its health check once the volume is attached to it, until the returned
// stop is called.
func breakWhenDataArrives(s *sim.Sim, volume, image string) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond):
			}
			v, _ := s.VolumeByID(volume)
			if srv, ok := s.Server(v.ServerID); ok && srv.ImageID == image {
				_ = s.SetHealth(srv.ID, sim.HealthFailing)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// The replacement of a stateful server vanishes in the middle of the
// handover (deleted by hand, or failed and removed): the volume goes back
// to the old server, which runs again, and the rollout goes on with
// another replacement instead of halting — nothing says the image or the
// data is at fault.
func TestStatefulHandoverToAVanishedServerGoesOn(t *testing.T) {
	order := []string{"stop", "snapshot", "detach", "attach", "gate"}
	for i, at := range order[:4] {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			env := simtest.Start(t, grouptest.FastSim(int64(1700+i)), 0)
			env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
			data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
			g := grouptest.ParseGroup(t, statefulGroup(t, 1, 3))
			grouptest.Rebuild(t, env, g, grouptest.FastOptions())
			patched := env.Sim.AddImage(sim.Image{Name: "gold"})

			log := &controller.EventLog{}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			result := make(chan controller.GroupResult, 1)
			go func() {
				result <- controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, log, grouptest.Logger(t), grouptest.FastOptions())[0]
			}()

			var to, reached string
			grouptest.WaitUntil(t, 20*time.Second, "the handover to reach "+at, func() bool {
				v, _ := env.Sim.VolumeByID(data.ID)
				reached, to = v.Metadata[controller.PropHandoverStep], v.Metadata[controller.PropHandoverTo]
				return slices.Contains(order[i:], reached)
			})
			if err := env.Cloud.DeleteServer(context.Background(), to); err != nil {
				t.Fatalf("delete the replacement %s: %v", to, err)
			}
			res := <-result
			if !res.Converged {
				t.Fatalf("replacement deleted at %q: the rollout ended with %v, want it converged with another replacement", reached, res.Err)
			}
			servers := env.Sim.Servers()
			v, _ := env.Sim.VolumeByID(data.ID)
			if len(servers) != 1 || servers[0].ID == to || servers[0].ImageID != patched.ID || v.ServerID != servers[0].ID {
				t.Fatalf("replacement deleted at %q: %d servers, volume on %q: want the volume on one new server on the new image", reached, len(servers), v.ServerID)
			}
			if err := env.Sim.CheckExclusiveAttachments(); err != nil {
				t.Error(err)
			}
			for _, e := range log.Events() {
				if e.Type == controller.EventHalted {
					t.Errorf("replacement deleted at %q: the rollout halted: %s", reached, e.Reason)
				}
			}
		})
	}
}

// A daemon that starts after a handover step was recorded, more than the
// progress deadline ago (it was down that long), gives the step its whole
// deadline from its own first look. Here the first controller could not
// attach the volume (Nova answered 503) and was killed; the next one
// starts after the deadline, sends the attach, and must wait for it rather
// than roll the handover back at once as "did not attach in time".
func TestStatefulHandoverStepAfterALongDowntimeGetsItsDeadline(t *testing.T) {
	opts := grouptest.FastSim(1710)
	opts.AttachTime = sim.Fixed(400 * time.Millisecond)
	env := simtest.Start(t, opts, 0)
	env.Sim.AddImage(sim.Image{Name: "gold", Created: time.Now().Add(-time.Hour)})
	data := env.Sim.AddVolume(sim.VolumeSpec{Name: "data-db"})
	g := grouptest.ParseGroup(t, strings.Replace(statefulGroup(t, 1, 0), "progress_deadline: 20s", "progress_deadline: 1s", 1))
	grouptest.Rebuild(t, env, g, grouptest.FastOptions())
	patched := env.Sim.AddImage(sim.Image{Name: "gold"})

	if err := env.Sim.InjectFault(sim.Fault{Service: "compute", Method: "POST", Path: `^/servers/[^/]+/os-volume_attachments$`, Action: sim.FailWith, Status: 503}); err != nil {
		t.Fatal(err)
	}
	ctx, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		controller.Rebuild(ctx, env.Cloud.Services(), []config.Group{g}, nil, grouptest.Logger(t), grouptest.FastOptions())
	}()
	grouptest.WaitUntil(t, 20*time.Second, "an attach of the volume refused at step attach", func() bool {
		v, _ := env.Sim.VolumeByID(data.ID)
		if v.Metadata[controller.PropHandoverStep] != "attach" {
			return false
		}
		for _, r := range env.Sim.Requests() {
			if r.Method == "POST" && strings.HasSuffix(r.Path, "/os-volume_attachments") && r.Status == 503 {
				return true
			}
		}
		return false
	})
	kill()
	<-done
	env.Sim.ClearFaults()
	v, _ := env.Sim.VolumeByID(data.ID)
	recorded, err := time.Parse(time.RFC3339Nano, v.Metadata[controller.PropHandoverAt])
	if err != nil {
		t.Fatalf("the attach step's time: %v", err)
	}
	grouptest.WaitUntil(t, 5*time.Second, "the progress deadline to pass while no controller runs", func() bool {
		return time.Since(recorded) > 1500*time.Millisecond
	})

	log := &controller.EventLog{}
	ctx2, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := controller.Rebuild(ctx2, env.Cloud.Services(), []config.Group{g}, log, grouptest.Logger(t), grouptest.FastOptions())[0]
	if !res.Converged {
		t.Fatalf("the restarted rollout ended with %v, want the attach it sent waited for", res.Err)
	}
	servers := env.Sim.Servers()
	v, _ = env.Sim.VolumeByID(data.ID)
	if len(servers) != 1 || servers[0].ImageID != patched.ID || v.ServerID != servers[0].ID {
		t.Fatalf("%d servers, volume on %q: want the volume on the one server, on the new image", len(servers), v.ServerID)
	}
	for _, e := range log.Events() {
		if e.Type == controller.EventHandover && strings.Contains(e.Message, "rolled back") {
			t.Errorf("the handover was rolled back: %s", e.Message)
		}
	}
}
