package openstack_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/simtest"
)

// service filters the request log by service.
func service(s *sim.Sim, name string) []sim.Request {
	var out []sim.Request
	for _, r := range s.Requests() {
		if r.Service == name {
			out = append(out, r)
		}
	}
	return out
}

// bootForVolume creates a server through the provisioner and waits until the
// simulator has it ACTIVE.
func bootForVolume(t *testing.T, env *simtest.Env, name string) provisioner.Server {
	t.Helper()
	s, err := env.Cloud.CreateServer(ctx(t), spec(env, name, "phoenix-group:"+name))
	if err != nil {
		t.Fatal(err)
	}
	waitSim(t, name+" ACTIVE", func() bool { v, _ := env.Sim.Server(s.ID); return v.Status == "ACTIVE" && v.TaskState == "" })
	return s
}

// waitSim polls the simulator's own state (no API requests) until cond.
func waitSim(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestVolumeMetadataIsMerged(t *testing.T) {
	env := simtest.Start(t, sim.Options{}, 0)
	v := env.Sim.AddVolume(sim.VolumeSpec{Name: "data", Metadata: map[string]string{"phoenix:group": "db"}})
	env.Sim.ResetRequests()
	if err := env.Cloud.SetVolumeMetadata(ctx(t), v.ID, map[string]string{"phoenix:phase": "handover"}); err != nil {
		t.Fatal(err)
	}
	reqs := service(env.Sim, "block-storage")
	if len(reqs) != 1 || reqs[0].Method != "POST" || !strings.HasSuffix(reqs[0].Path, "/volumes/"+v.ID+"/metadata") {
		t.Fatalf("requests %+v, want one POST to the volume's metadata (PUT would replace it)", reqs)
	}
	got, err := env.Cloud.Volume(ctx(t), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata["phoenix:group"] != "db" || got.Metadata["phoenix:phase"] != "handover" || got.Status != provisioner.VolumeAvailable {
		t.Errorf("volume after the merge: %+v", got)
	}
	if err := env.Cloud.SetVolumeMetadata(ctx(t), "no-such-volume", map[string]string{"a": "b"}); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("metadata of a missing volume: %v, want ErrNotFound", err)
	}
}

func TestListsFilterByMetadataOnTheWire(t *testing.T) {
	env := simtest.Start(t, sim.Options{VolumeSnapshotTime: sim.Fixed(0)}, 2)
	var mine []string
	for i := range 3 {
		v := env.Sim.AddVolume(sim.VolumeSpec{Name: "v", Metadata: map[string]string{"phoenix:group": "db", "i": string(rune('0' + i))}})
		mine = append(mine, v.ID)
		env.Sim.AddVolume(sim.VolumeSpec{Name: "other", Metadata: map[string]string{"phoenix:group": "web"}})
	}
	env.Sim.ResetRequests()
	list, err := env.Cloud.VolumesWith(ctx(t), map[string]string{"phoenix:group": "db"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range list {
		got = append(got, v.ID)
	}
	slices.Sort(got)
	slices.Sort(mine)
	if !slices.Equal(got, mine) {
		t.Errorf("volumes %v, want %v", got, mine)
	}
	reqs := service(env.Sim, "block-storage")
	if len(reqs) != 2 { // 2 + 1 at two a page
		t.Errorf("%d list requests at two a page for three volumes, want 2", len(reqs))
	}
	for _, r := range reqs {
		q, _ := url.ParseQuery(r.Query)
		if q.Get("metadata") != "{'phoenix:group':'db'}" || r.Microversion != "3.22" {
			t.Errorf("list request %s?%s at %q: want the metadata filter at 3.22", r.Path, r.Query, r.Microversion)
		}
	}

	for i, who := range []string{"db-1", "db-2", "web-1"} {
		snap, err := env.Cloud.SnapshotVolume(ctx(t), mine[i], "backup-"+who, map[string]string{"phoenix:backup-of": who, "phoenix:group": who[:len(who)-2]})
		if err != nil {
			t.Fatal(err)
		}
		if snap.Status != provisioner.VolumeCreating || snap.VolumeID != mine[i] {
			t.Errorf("snapshot as created: %+v", snap)
		}
	}
	env.Sim.ResetRequests()
	snaps, err := env.Cloud.VolumeSnapshotsWith(ctx(t), map[string]string{"phoenix:group": "db"})
	if err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots of db: %+v, %v", snaps, err)
	}
	for _, r := range service(env.Sim, "block-storage") {
		q, _ := url.ParseQuery(r.Query)
		if !strings.HasSuffix(r.Path, "/snapshots/detail") || q.Get("metadata") != "{'phoenix:group': 'db'}" || r.Microversion != "3.22" {
			t.Errorf("snapshot list request %s?%s at %q", r.Path, r.Query, r.Microversion)
		}
	}
}

func TestSnapshotOfAVolumeInUseIsForced(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0), VolumeSnapshotTime: sim.Fixed(0)}, 0)
	s := bootForVolume(t, env, "db-1")
	v := env.Sim.AddVolume(sim.VolumeSpec{Name: "data"})
	if err := env.Sim.AttachVolume(s.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	// The simulator, like Cinder, refuses a snapshot of a volume in use
	// unless it is forced: success is the proof that force was sent.
	snap, err := env.Cloud.SnapshotVolume(ctx(t), v.ID, "backup", map[string]string{"phoenix:backup-of": s.ID})
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Cloud.VolumeSnapshot(ctx(t), snap.ID)
	if err != nil || got.Status != provisioner.VolumeAvailable || got.Metadata["phoenix:backup-of"] != s.ID || got.Created.IsZero() {
		t.Errorf("snapshot: %+v, %v", got, err)
	}
	if err := env.Cloud.DeleteVolumeSnapshot(ctx(t), snap.ID); err != nil {
		t.Fatal(err)
	}
	waitSim(t, "snapshot gone", func() bool { return len(env.Sim.VolumeSnapshots()) == 0 })
	if _, err := env.Cloud.VolumeSnapshot(ctx(t), snap.ID); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("a deleted snapshot: %v, want ErrNotFound", err)
	}
	if err := env.Cloud.DeleteVolumeSnapshot(ctx(t), snap.ID); err != nil {
		t.Errorf("deleting a deleted snapshot: %v, want nil", err)
	}
	if _, err := env.Cloud.SnapshotVolume(ctx(t), "no-such-volume", "x", nil); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("snapshot of a missing volume: %v, want ErrNotFound", err)
	}
}

func TestAttachAndDetachGoThroughNova(t *testing.T) {
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0), AttachTime: sim.Fixed(20 * time.Millisecond)}, 0)
	a, b := bootForVolume(t, env, "db-1"), bootForVolume(t, env, "db-2")
	v := env.Sim.AddVolume(sim.VolumeSpec{Name: "data"})
	env.Sim.ResetRequests()
	if err := env.Cloud.AttachVolume(ctx(t), a.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	reqs := env.Sim.Requests()
	if len(reqs) != 1 || reqs[0].Service != "compute" || reqs[0].Method != "POST" || !strings.HasSuffix(reqs[0].Path, "/servers/"+a.ID+"/os-volume_attachments") {
		t.Fatalf("attach requests %+v, want one POST to Nova's os-volume_attachments", reqs)
	}
	waitSim(t, "in-use", func() bool { got, _ := env.Sim.VolumeByID(v.ID); return got.Status == "in-use" })
	got, err := env.Cloud.Volume(ctx(t), v.ID)
	if err != nil || !got.AttachedTo(a.ID) || got.Attachments[0].Device == "" {
		t.Errorf("volume after attach: %+v, %v", got, err)
	}
	list, err := env.Cloud.ListServers(ctx(t), "phoenix-group:db-1")
	if err != nil || len(list) != 1 || !slices.Equal(list[0].Volumes, []string{v.ID}) {
		t.Errorf("the server list's volumes: %+v, %v", list, err)
	}

	err = env.Cloud.AttachVolume(ctx(t), b.ID, v.ID)
	var refused *provisioner.RefusedError
	if !errors.As(err, &refused) || refused.Status != 400 || !strings.Contains(refused.Message, "already attached") ||
		!strings.Contains(err.Error(), v.ID) || !strings.Contains(err.Error(), b.ID) {
		t.Errorf("attach to a second server: %v, want a 400 refusal naming both", err)
	}
	if n := len(env.Sim.RefusedAttachments()); n != 1 {
		t.Errorf("%d refused attachments, want 1", n)
	}

	env.Sim.ResetRequests()
	if err := env.Cloud.DetachVolume(ctx(t), a.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	reqs = env.Sim.Requests()
	if len(reqs) != 1 || reqs[0].Service != "compute" || reqs[0].Method != "DELETE" || !strings.HasSuffix(reqs[0].Path, "/servers/"+a.ID+"/os-volume_attachments/"+v.ID) {
		t.Fatalf("detach requests %+v, want one DELETE to Nova", reqs)
	}
	waitSim(t, "available", func() bool { got, _ := env.Sim.VolumeByID(v.ID); return got.Status == "available" })
	if err := env.Cloud.DetachVolume(ctx(t), a.ID, v.ID); err != nil {
		t.Errorf("detaching a detached volume: %v, want nil", err)
	}
	if err := env.Cloud.AttachVolume(ctx(t), b.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	waitSim(t, "in-use on the second server", func() bool { got, _ := env.Sim.VolumeByID(v.ID); return got.Status == "in-use" && got.ServerID == b.ID })
	if hist := env.Sim.AttachmentHistory(); len(hist) != 2 || hist[0].Released.After(hist[1].Requested) {
		t.Errorf("history: %+v", hist)
	}
}

func TestNoCinderIsNamedOnlyWhenUsed(t *testing.T) {
	env := simtest.Start(t, sim.Options{NoVolumeService: true, BootTime: sim.Fixed(0)}, 0)
	if _, err := env.Cloud.ListServers(ctx(t), "phoenix-group:web"); err != nil {
		t.Fatalf("a cloud without Cinder cannot list servers: %v", err)
	}
	calls := map[string]func() error{
		"Volume":         func() error { _, err := env.Cloud.Volume(ctx(t), "v1"); return err },
		"VolumesWith":    func() error { _, err := env.Cloud.VolumesWith(ctx(t), map[string]string{"a": "b"}); return err },
		"SnapshotVolume": func() error { _, err := env.Cloud.SnapshotVolume(ctx(t), "v1", "s", nil); return err },
		"AttachVolume":   func() error { return env.Cloud.AttachVolume(ctx(t), "s1", "v1") },
		"DetachVolume":   func() error { return env.Cloud.DetachVolume(ctx(t), "s1", "v1") },
	}
	env.Sim.ResetRequests()
	for name, call := range calls {
		err := call()
		if err == nil || !strings.Contains(err.Error(), "no block-storage (Cinder") || name != "VolumesWith" && !strings.Contains(err.Error(), "v1") {
			t.Errorf("%s: %v, want an error naming the missing service and the volume", name, err)
		}
		if strings.Contains(err.Error(), "demo-secret") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
	if n := len(env.Sim.Requests()); n != 0 {
		t.Errorf("%d requests sent for volume calls on a cloud without Cinder", n)
	}
	s := env.Cloud.Services()
	err := provisioner.Missing(s.Volumes)
	if !errors.Is(err, provisioner.ErrUnavailable) || !strings.Contains(err.Error(), "Cinder (block storage) is not available on this cloud: no block-storage endpoint (catalog type volumev3)") {
		t.Errorf("Missing(Volumes) on a cloud without Cinder: %v, want the missing service named", err)
	}
	if err := provisioner.Missing(s.ServerActions); err != nil {
		t.Errorf("Missing(ServerActions) on a cloud without Cinder: %v", err)
	}
}

func TestStopStartRebuild(t *testing.T) {
	// The rebuild lasts long enough that the stop sent after it finds it
	// under way, however busy the machine.
	env := simtest.Start(t, sim.Options{BootTime: sim.Fixed(0), PowerTime: sim.Fixed(10 * time.Millisecond), RebuildTime: sim.Fixed(3 * time.Second)}, 0)
	s := bootForVolume(t, env, "web-1")
	status := func(want string) func() bool {
		return func() bool { v, _ := env.Sim.Server(s.ID); return v.Status == want && v.TaskState == "" }
	}
	env.Sim.ResetRequests()
	if err := env.Cloud.StopServer(ctx(t), s.ID); err != nil {
		t.Fatal(err)
	}
	if reqs := requests(env.Sim, "POST", "/servers/"+s.ID+"/action"); len(reqs) != 1 {
		t.Errorf("%d action requests, want 1", len(reqs))
	}
	waitSim(t, "SHUTOFF", status(provisioner.StatusShutoff))
	// Nova answers 409 to a stop of a stopped server; the provisioner
	// looks and calls it done.
	if err := env.Cloud.StopServer(ctx(t), s.ID); err != nil {
		t.Errorf("stopping a stopped server: %v, want nil", err)
	}
	if err := env.Cloud.StartServer(ctx(t), s.ID); err != nil {
		t.Fatal(err)
	}
	waitSim(t, "ACTIVE", status(provisioner.StatusActive))
	if err := env.Cloud.StartServer(ctx(t), s.ID); err != nil {
		t.Errorf("starting an active server: %v, want nil", err)
	}
	// A 409 for another reason stays an error.
	if err := env.Cloud.RebuildServer(ctx(t), s.ID, spec(env, "gold", "x").ImageID, map[string]string{"phoenix:revision": "r2"}); err != nil {
		t.Fatal(err)
	}
	var refused *provisioner.RefusedError
	if err := env.Cloud.StopServer(ctx(t), s.ID); !errors.As(err, &refused) || refused.Status != 409 || !strings.Contains(err.Error(), s.ID) {
		t.Errorf("stop during a rebuild: %v, want a 409 refusal naming the server", err)
	}
	before, _ := env.Sim.Server(s.ID)
	waitSim(t, "ACTIVE after rebuild", status(provisioner.StatusActive))
	after, _ := env.Sim.Server(s.ID)
	if after.ImageID == s.ImageID || after.Address != before.Address || after.Metadata["phoenix:revision"] != "r2" {
		t.Errorf("after rebuild: image %s (was %s), address %s (was %s), metadata %v", after.ImageID, s.ImageID, after.Address, before.Address, after.Metadata)
	}
	for name, err := range map[string]error{
		"stop":    env.Cloud.StopServer(ctx(t), "no-such-server"),
		"start":   env.Cloud.StartServer(ctx(t), "no-such-server"),
		"rebuild": env.Cloud.RebuildServer(ctx(t), "no-such-server", after.ImageID, nil),
	} {
		if !errors.Is(err, provisioner.ErrNotFound) {
			t.Errorf("%s of a missing server: %v, want ErrNotFound", name, err)
		}
	}
}
