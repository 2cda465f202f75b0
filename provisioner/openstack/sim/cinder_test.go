package sim_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// cinder is the block-storage client of an env at a volume microversion.
func (e *env) cinder(t testing.TB, mv string) *gophercloud.ServiceClient {
	t.Helper()
	c, err := openstack.NewBlockStorageV3(e.provider, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatal(err)
	}
	c.Microversion = mv
	return c
}

func volumeStatus(t testing.TB, c *gophercloud.ServiceClient, id string) string {
	t.Helper()
	v, err := volumes.Get(context.Background(), c, id).Extract()
	if err != nil {
		t.Fatalf("get volume %s: %v", id, err)
	}
	return v.Status
}

// activeServer boots a server and waits until it is ACTIVE.
func (e *env) activeServer(t testing.TB, name string) *servers.Server {
	t.Helper()
	srv := e.create(t, e.opts(name))
	waitFor(t, name+" ACTIVE", func() bool { v, _ := e.sim.Server(srv.ID); return v.Status == "ACTIVE" })
	return srv
}

func TestVolumeLifecycle(t *testing.T) {
	e := start(t, sim.Options{VolumeTime: sim.Fixed(30 * time.Millisecond)})
	c := e.cinder(t, "3.22")
	ctx := context.Background()
	vol, err := volumes.Create(ctx, c, volumes.CreateOpts{Name: "data-1", Size: 2, Metadata: map[string]string{"group": "db"}}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if vol.Status != "creating" || vol.Size != 2 || vol.Bootable != "false" || vol.CreatedAt.IsZero() {
		t.Fatalf("as created: %+v", vol)
	}
	waitFor(t, "available", func() bool { return volumeStatus(t, c, vol.ID) == "available" })

	// Metadata: POST merges, PUT replaces.
	post := func(method string, md map[string]string) map[string]string {
		var out struct {
			Metadata map[string]string `json:"metadata"`
		}
		url := c.ServiceURL("volumes", vol.ID, "metadata")
		var err error
		if method == "POST" {
			_, err = c.Post(ctx, url, map[string]any{"metadata": md}, &out, &gophercloud.RequestOpts{OkCodes: []int{200}})
		} else {
			_, err = c.Put(ctx, url, map[string]any{"metadata": md}, &out, &gophercloud.RequestOpts{OkCodes: []int{200}})
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.Metadata
	}
	if got := post("POST", map[string]string{"phase": "backup"}); got["group"] != "db" || got["phase"] != "backup" {
		t.Errorf("after POST: %v", got)
	}
	if got := post("PUT", map[string]string{"only": "this"}); len(got) != 1 || got["only"] != "this" {
		t.Errorf("after PUT: %v", got)
	}

	for i := range 3 {
		e.sim.AddVolume(sim.VolumeSpec{Name: "other", Metadata: map[string]string{"n": string(rune('a' + i)), "kind": "x"}})
	}
	cases := []struct {
		name string
		opts volumes.ListOpts
		want int
	}{
		{"python literal, as gophercloud writes it", volumes.ListOpts{Metadata: map[string]string{"kind": "x"}}, 3},
		{"two keys", volumes.ListOpts{Metadata: map[string]string{"kind": "x", "n": "b"}}, 1},
		{"no match", volumes.ListOpts{Metadata: map[string]string{"kind": "y"}}, 0},
		{"pages of two", volumes.ListOpts{Metadata: map[string]string{"kind": "x"}, Limit: 2}, 3},
		{"everything", volumes.ListOpts{}, 4},
	}
	for _, tc := range cases {
		pages := 0
		n := 0
		err := volumes.List(c, tc.opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			list, err := volumes.ExtractVolumes(p)
			pages++
			n += len(list)
			return true, err
		})
		if err != nil || n != tc.want {
			t.Errorf("%s: %d volumes (%v), want %d", tc.name, n, err, tc.want)
		}
	}

	if err := volumes.Delete(ctx, c, vol.ID, nil).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if st := volumeStatus(t, c, vol.ID); st != "deleting" {
		t.Errorf("right after delete: %s", st)
	}
	waitFor(t, "gone", func() bool {
		_, err := volumes.Get(ctx, c, vol.ID).Extract()
		return gophercloud.ResponseCodeIs(err, 404)
	})
	_, err = volumes.Get(ctx, c, vol.ID).Extract()
	if body := errorBody(t, err); !strings.Contains(body, `"itemNotFound"`) || !strings.Contains(body, "Volume "+vol.ID+" could not be found.") {
		t.Errorf("404 body %s", body)
	}
}

// TestVolumeRefusals: the wrong-state answers of the development cloud's
// Cinder and Nova (400 "Invalid volume", 409 for the server's state).
func TestVolumeRefusals(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), AttachTime: sim.Fixed(0)})
	c := e.cinder(t, "3.22")
	ctx := context.Background()
	a, b := e.activeServer(t, "a"), e.activeServer(t, "b")
	inUse := e.sim.AddVolume(sim.VolumeSpec{Name: "in-use"})
	if err := e.sim.AttachVolume(a.ID, inUse.ID); err != nil {
		t.Fatal(err)
	}
	free := e.sim.AddVolume(sim.VolumeSpec{Name: "free"})
	withSnap := e.sim.AddVolume(sim.VolumeSpec{Name: "with-snapshot"})
	if _, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: withSnap.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	e.sim.StickNextBoots(1)
	building := e.create(t, e.opts("building"))

	cases := []struct {
		name       string
		call       func() error
		status     int
		kind, text string
	}{
		{"delete a volume in use", func() error { return volumes.Delete(ctx, c, inUse.ID, nil).ExtractErr() },
			400, "badRequest", "must not be migrating, attached"},
		{"delete a volume with a snapshot", func() error { return volumes.Delete(ctx, c, withSnap.ID, nil).ExtractErr() },
			400, "badRequest", "have snapshots"},
		{"snapshot a volume in use without force", func() error {
			_, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: inUse.ID}).Extract()
			return err
		}, 400, "badRequest", "status must be available, but current status is: in-use"},
		{"attach a volume in use to another server", func() error {
			_, err := volumeattach.Create(ctx, e.compute, b.ID, volumeattach.CreateOpts{VolumeID: inUse.ID}).Extract()
			return err
		}, 400, "badRequest", "is already attached to instances: " + a.ID},
		{"attach to a server that is building", func() error {
			_, err := volumeattach.Create(ctx, e.compute, building.ID, volumeattach.CreateOpts{VolumeID: free.ID}).Extract()
			return err
		}, 409, "conflictingRequest", "while it is in vm_state building"},
		{"attach a volume that does not exist", func() error {
			_, err := volumeattach.Create(ctx, e.compute, b.ID, volumeattach.CreateOpts{VolumeID: "4a1d1b6e-0000-4000-8000-000000000000"}).Extract()
			return err
		}, 404, "itemNotFound", "could not be found"},
		{"detach a volume that is not attached", func() error {
			return volumeattach.Delete(ctx, e.compute, b.ID, free.ID).ExtractErr()
		}, 404, "itemNotFound", "is not attached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !gophercloud.ResponseCodeIs(err, tc.status) {
				t.Fatalf("%v, want HTTP %d", err, tc.status)
			}
			body := errorBody(t, err)
			if !strings.Contains(body, `"`+tc.kind+`"`) || !strings.Contains(body, tc.text) {
				t.Errorf("body %s, want %s with %q", body, tc.kind, tc.text)
			}
		})
	}
	if v, _ := e.sim.VolumeByID(inUse.ID); v.Status != "in-use" || v.ServerID != a.ID {
		t.Errorf("the volume in use after the refusals: %+v", v)
	}
	err := e.sim.CheckExclusiveAttachments()
	if err == nil || !strings.Contains(err.Error(), "while it was on server "+a.ID) {
		t.Errorf("CheckExclusiveAttachments after a refused second attach: %v", err)
	}
	refused := e.sim.RefusedAttachments()
	if len(refused) != 3 || refused[0].HeldBy != a.ID || refused[0].ServerID != b.ID || refused[0].Status != 400 {
		t.Errorf("refused attachments: %+v", refused)
	}
}

func TestAttachDetachHistory(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), AttachTime: sim.Fixed(40 * time.Millisecond), DeleteTime: sim.Fixed(10 * time.Millisecond)})
	c := e.cinder(t, "3.22")
	ctx := context.Background()
	a, b := e.activeServer(t, "a"), e.activeServer(t, "b")
	vol := e.sim.AddVolume(sim.VolumeSpec{Name: "data", Size: 3})

	att, err := volumeattach.Create(ctx, e.compute, a.ID, volumeattach.CreateOpts{VolumeID: vol.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if att.VolumeID != vol.ID || att.ServerID != a.ID || att.Device != "/dev/vdb" {
		t.Errorf("attachment: %+v", att)
	}
	if st := volumeStatus(t, c, vol.ID); st != "attaching" {
		t.Errorf("right after attach: %s", st)
	}
	waitFor(t, "in-use", func() bool { return volumeStatus(t, c, vol.ID) == "in-use" })
	got, _ := volumes.Get(ctx, c, vol.ID).Extract()
	if len(got.Attachments) != 1 || got.Attachments[0].ServerID != a.ID || got.Attachments[0].Device != "/dev/vdb" {
		t.Errorf("Cinder's attachments: %+v", got.Attachments)
	}
	srv, _ := servers.Get(ctx, e.compute, a.ID).Extract()
	if len(srv.AttachedVolumes) != 1 || srv.AttachedVolumes[0].ID != vol.ID {
		t.Errorf("server's volumes_attached: %+v", srv.AttachedVolumes)
	}
	pages, err := volumeattach.List(e.compute, a.ID).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := volumeattach.ExtractVolumeAttachments(pages); len(list) != 1 || list[0].VolumeID != vol.ID {
		t.Errorf("os-volume_attachments: %+v", list)
	}
	// A forced snapshot of the volume in use.
	snap, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: vol.ID, Force: true, Name: "backup"}).Extract()
	if err != nil || snap.Status != "creating" || snap.Size != 3 {
		t.Fatalf("forced snapshot: %+v, %v", snap, err)
	}

	if err := volumeattach.Delete(ctx, e.compute, a.ID, vol.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if st := volumeStatus(t, c, vol.ID); st != "detaching" {
		t.Errorf("right after detach: %s", st)
	}
	waitFor(t, "available", func() bool { return volumeStatus(t, c, vol.ID) == "available" })
	if v, _ := e.sim.Server(a.ID); len(v.Volumes) != 0 {
		t.Errorf("server a still lists %v", v.Volumes)
	}
	if _, err := volumeattach.Create(ctx, e.compute, b.ID, volumeattach.CreateOpts{VolumeID: vol.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "in-use on b", func() bool { return volumeStatus(t, c, vol.ID) == "in-use" })

	// Deleting the server frees the volume, as Nova does.
	if err := servers.Delete(ctx, e.compute, b.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "available after the server is gone", func() bool { return volumeStatus(t, c, vol.ID) == "available" })

	hist := e.sim.AttachmentHistory()
	if len(hist) != 2 || hist[0].ServerID != a.ID || hist[1].ServerID != b.ID {
		t.Fatalf("history: %+v", hist)
	}
	for i, h := range hist {
		if h.Requested.IsZero() || h.Attached.Before(h.Requested) || h.Released.Before(h.Attached) || h.Released.IsZero() {
			t.Errorf("record %d out of order: %+v", i, h)
		}
	}
	if hist[0].DetachRequested.IsZero() || !hist[1].DetachRequested.IsZero() {
		t.Errorf("detach requested: %v, %v (the second ended with its server)", hist[0].DetachRequested, hist[1].DetachRequested)
	}
	if !hist[1].Requested.After(hist[0].Released) && !hist[1].Requested.Equal(hist[0].Released) {
		t.Errorf("the second attachment began before the first ended: %+v", hist)
	}
	if err := e.sim.CheckExclusiveAttachments(); err != nil {
		t.Error(err)
	}
}

func TestSnapshotMetadataFilterFrom322(t *testing.T) {
	e := start(t, sim.Options{VolumeSnapshotTime: sim.Fixed(0)})
	ctx := context.Background()
	vol := e.sim.AddVolume(sim.VolumeSpec{Name: "v"})
	c := e.cinder(t, "3.22")
	for _, who := range []string{"a", "b"} {
		if _, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: vol.ID, Metadata: map[string]string{"who": who}}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	count := func(mv string) int {
		q := "?metadata=" + strings.ReplaceAll("{'who': 'a'}", " ", "%20")
		var body struct {
			Snapshots []json.RawMessage `json:"snapshots"`
		}
		cc := e.cinder(t, mv)
		if _, err := cc.Get(ctx, cc.ServiceURL("snapshots", "detail")+q, &body, nil); err != nil {
			t.Fatal(err)
		}
		return len(body.Snapshots)
	}
	if n := count("3.22"); n != 1 {
		t.Errorf("at 3.22: %d snapshots, want the 1 matching", n)
	}
	if n := count("3.0"); n != 2 {
		t.Errorf("at 3.0: %d snapshots, want both: Cinder drops the filter below 3.22", n)
	}
	if got := e.sim.Requests(); got[len(got)-1].Microversion != "3.0" || got[len(got)-1].Service != "block-storage" {
		t.Errorf("request log: %+v", got[len(got)-1])
	}

	e.sim.FailNextVolumeSnapshots(1)
	snap, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: vol.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "error", func() bool {
		s, err := snapshots.Get(ctx, c, snap.ID).Extract()
		return err == nil && s.Status == "error"
	})
	if err := snapshots.Delete(ctx, c, snap.ID).ExtractErr(); err != nil {
		t.Errorf("delete a snapshot in error: %v", err)
	}
	waitFor(t, "gone", func() bool {
		_, err := snapshots.Get(ctx, c, snap.ID).Extract()
		return gophercloud.ResponseCodeIs(err, 404)
	})
}

func TestVolumeFaults(t *testing.T) {
	e := start(t, sim.Options{})
	c := e.cinder(t, "3.22")
	if err := e.sim.InjectFault(sim.Fault{Service: "block-storage", Method: "POST", Path: `/snapshots$`, Action: sim.FailWith, Status: 503, Times: 1}); err != nil {
		t.Fatal(err)
	}
	vol := e.sim.AddVolume(sim.VolumeSpec{})
	_, err := snapshots.Create(context.Background(), c, snapshots.CreateOpts{VolumeID: vol.ID}).Extract()
	if !gophercloud.ResponseCodeIs(err, 503) || !strings.Contains(errorBody(t, err), `"serviceUnavailable"`) {
		t.Fatalf("faulted snapshot: %v", err)
	}
	if n := len(e.sim.VolumeSnapshots()); n != 0 {
		t.Errorf("a FailWith fault made %d snapshots", n)
	}
}

func TestNoVolumeService(t *testing.T) {
	e := start(t, sim.Options{NoVolumeService: true})
	if _, err := openstack.NewBlockStorageV3(e.provider, gophercloud.EndpointOpts{}); err == nil {
		t.Fatal("the catalog lists block storage")
	}
}
