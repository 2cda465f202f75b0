package sim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

func serverState(t testing.TB, e *env, id string) *servers.Server {
	t.Helper()
	s, err := servers.Get(context.Background(), e.compute, id).Extract()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func healthy(e *env, id string) func() bool {
	return func() bool { v, _ := e.sim.Server(id); return v.Healthy }
}

func TestStopAndStart(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(30 * time.Millisecond), PowerTime: sim.Fixed(40 * time.Millisecond)})
	ctx := context.Background()
	srv := e.activeServer(t, "web")
	waitFor(t, "healthy", healthy(e, srv.ID))
	v, _ := e.sim.Server(srv.ID)

	if err := servers.Stop(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if s := serverState(t, e, srv.ID); s.Status != "ACTIVE" || s.TaskState != "powering-off" {
		t.Errorf("right after os-stop: %s task %q", s.Status, s.TaskState)
	}
	err := servers.Start(ctx, e.compute, srv.ID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, 409) || !strings.Contains(errorBody(t, err), "Cannot 'start' instance "+srv.ID+" while it is in vm_state active") {
		t.Errorf("os-start while powering off: %v", err)
	}
	waitFor(t, "SHUTOFF", func() bool { return serverState(t, e, srv.ID).Status == "SHUTOFF" })
	s := serverState(t, e, srv.ID)
	if s.PowerState != 4 || s.TaskState != "" || s.VmState != "stopped" {
		t.Errorf("stopped: power %d task %q vm %s", s.PowerState, s.TaskState, s.VmState)
	}
	if status, _ := probe(t, v.Address, e.sim.HealthPort()); status != 0 {
		t.Errorf("a stopped server answers health checks: %d", status)
	}
	err = servers.Stop(ctx, e.compute, srv.ID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, 409) || !strings.Contains(errorBody(t, err), "while it is in vm_state stopped") {
		t.Errorf("os-stop of a stopped server: %v", err)
	}
	if _, err := servers.UpdateMetadata(ctx, e.compute, srv.ID, servers.MetadataOpts{"phase": "stopped"}).Extract(); err != nil {
		t.Errorf("metadata of a stopped server: %v", err)
	}

	if err := servers.Start(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ACTIVE", func() bool { return serverState(t, e, srv.ID).Status == "ACTIVE" })
	if v, _ := e.sim.Server(srv.ID); v.Healthy && time.Since(v.ActiveAt) < 25*time.Millisecond {
		t.Errorf("healthy %v after start, before the health delay", time.Since(v.ActiveAt))
	}
	waitFor(t, "healthy again", healthy(e, srv.ID))
	if status, _ := probe(t, v.Address, e.sim.HealthPort()); status != 200 {
		t.Errorf("after start the application answers %d", status)
	}
}

// TestStopRightAfterBoot: the boot's late application timer must not bring
// the application of a server stopped meanwhile back up.
func TestStopRightAfterBoot(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(80 * time.Millisecond), PowerTime: sim.Fixed(0)})
	srv := e.activeServer(t, "web")
	if err := servers.Stop(context.Background(), e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SHUTOFF", func() bool { v, _ := e.sim.Server(srv.ID); return v.Status == "SHUTOFF" })
	deadline := time.Now().Add(150 * time.Millisecond)
	for time.Now().Before(deadline) {
		if v, _ := e.sim.Server(srv.ID); v.Healthy {
			t.Fatal("a stopped server became healthy")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRebuild(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(20 * time.Millisecond),
		RebuildTime: sim.Fixed(60 * time.Millisecond), PowerTime: sim.Fixed(0)})
	ctx := context.Background()
	o := e.opts("web")
	o.Metadata = map[string]string{"revision": "r1", "keep": "no"}
	srv := e.create(t, o)
	waitFor(t, "healthy", healthy(e, srv.ID))
	vol := e.sim.AddVolume(sim.VolumeSpec{Name: "data"})
	if err := e.sim.AttachVolume(srv.ID, vol.ID); err != nil {
		t.Fatal(err)
	}
	before, _ := e.sim.Server(srv.ID)
	gold := e.sim.AddImage(sim.Image{Name: "gold-2"})

	got, err := servers.Rebuild(ctx, e.compute, srv.ID, servers.RebuildOpts{ImageRef: gold.ID,
		Metadata: map[string]string{"revision": "r2"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != srv.ID || got.Status != "REBUILD" {
		t.Errorf("rebuild answer: %s %s", got.ID, got.Status)
	}
	s := serverState(t, e, srv.ID)
	if s.Status != "REBUILD" || s.TaskState != "rebuilding" || s.Image["id"] != gold.ID {
		t.Errorf("during rebuild: %s task %q image %v", s.Status, s.TaskState, s.Image["id"])
	}
	if status, _ := probe(t, before.Address, e.sim.HealthPort()); status != 0 {
		t.Errorf("a server being rebuilt answers health checks: %d", status)
	}
	err = servers.Stop(ctx, e.compute, srv.ID).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, 409) || !strings.Contains(errorBody(t, err), "task_state rebuilding") {
		t.Errorf("os-stop during rebuild: %v", err)
	}
	waitFor(t, "ACTIVE", func() bool { return serverState(t, e, srv.ID).Status == "ACTIVE" })
	waitFor(t, "healthy", healthy(e, srv.ID))
	after, _ := e.sim.Server(srv.ID)
	if after.Address != before.Address || after.ImageID != gold.ID || len(after.Volumes) != 1 || after.Volumes[0] != vol.ID {
		t.Errorf("after rebuild: %+v (before %+v)", after, before)
	}
	if len(after.Metadata) != 1 || after.Metadata["revision"] != "r2" {
		t.Errorf("metadata after rebuild: %v, want it replaced", after.Metadata)
	}

	// A stopped server stays stopped through a rebuild.
	if err := servers.Stop(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SHUTOFF", func() bool { return serverState(t, e, srv.ID).Status == "SHUTOFF" })
	if _, err := servers.Rebuild(ctx, e.compute, srv.ID, servers.RebuildOpts{ImageRef: e.img.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SHUTOFF after rebuild", func() bool {
		s := serverState(t, e, srv.ID)
		return s.Status == "SHUTOFF" && s.TaskState == ""
	})
	if v, _ := e.sim.Server(srv.ID); v.Metadata["revision"] != "r2" || v.ImageID != e.img.ID {
		t.Errorf("a rebuild without metadata: %v on %s", v.Metadata, v.ImageID)
	}

	_, err = servers.Rebuild(ctx, e.compute, srv.ID, servers.RebuildOpts{ImageRef: "4a1d1b6e-0000-4000-8000-000000000000"}).Extract()
	if !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("rebuild on a missing image: %v, want 400", err)
	}
}

// Pause and suspend take a server out as a stop does (its application
// silent), in their own states, which take metadata; unpause and resume
// bring it back.
func TestPauseAndSuspend(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(10 * time.Millisecond), PowerTime: sim.Fixed(20 * time.Millisecond)})
	ctx := context.Background()
	srv := e.activeServer(t, "web")
	waitFor(t, "healthy", healthy(e, srv.ID))
	v, _ := e.sim.Server(srv.ID)
	for _, step := range []struct {
		off, on       func() error
		status, state string
	}{
		{func() error { return servers.Pause(ctx, e.compute, srv.ID).ExtractErr() }, func() error { return servers.Unpause(ctx, e.compute, srv.ID).ExtractErr() }, "PAUSED", "paused"},
		{func() error { return servers.Suspend(ctx, e.compute, srv.ID).ExtractErr() }, func() error { return servers.Resume(ctx, e.compute, srv.ID).ExtractErr() }, "SUSPENDED", "suspended"},
	} {
		if err := step.off(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, step.status, func() bool { return serverState(t, e, srv.ID).Status == step.status })
		if s := serverState(t, e, srv.ID); s.VmState != step.state || s.TaskState != "" {
			t.Errorf("%s: vm %s task %q", step.status, s.VmState, s.TaskState)
		}
		if status, _ := probe(t, v.Address, e.sim.HealthPort()); status != 0 {
			t.Errorf("a %s server answers health checks: %d", step.status, status)
		}
		if _, err := servers.UpdateMetadata(ctx, e.compute, srv.ID, servers.MetadataOpts{"phase": step.state}).Extract(); err != nil {
			t.Errorf("metadata of a %s server: %v", step.status, err)
		}
		if err := step.off(); !gophercloud.ResponseCodeIs(err, 409) {
			t.Errorf("%s twice: %v, want 409", step.status, err)
		}
		if err := step.on(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "ACTIVE", func() bool { return serverState(t, e, srv.ID).Status == "ACTIVE" })
		waitFor(t, "healthy again", healthy(e, srv.ID))
	}
}
