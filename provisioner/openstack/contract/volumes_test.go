package contract_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// The volume and server-action checks: what a stateful handover (stop the
// old server, move its data volume to the new one) and a rebuild in place
// rely on. A volume must never be on two servers at once, and the cloud
// itself must refuse a second attach: Phoenix's plan counts on that
// refusal as its last line of defence.

// needCinder skips the test as a gap on a target whose catalog has no
// block-storage endpoint.
func (tg *target) needCinder(t *testing.T) {
	t.Helper()
	tg.gap(t, "cinder")
	_, err := tg.cloud.VolumesWith(ctx(t, time.Minute), map[string]string{"phoenix_contract": "probe"})
	if err != nil && strings.Contains(err.Error(), "no block-storage") {
		tg.gaps["cinder"] = "the catalog has no volumev3 (Cinder) endpoint"
		tg.gap(t, "cinder")
	}
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
}

// volume creates a 1 GiB volume and schedules its removal, which waits
// for the volume to be free (servers deleted by earlier cleanups release
// it a little later).
func (tg *target) volume(t *testing.T, name string, md map[string]string) provisioner.Volume {
	t.Helper()
	v, err := tg.cloud.CreateVolume(ctx(t, time.Minute), name, 1, md)
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), tg.patience)
		defer cancel()
		for c.Err() == nil {
			got, err := tg.cloud.Volume(c, v.ID)
			if errors.Is(err, provisioner.ErrNotFound) {
				return
			}
			if err == nil && (got.Status == provisioner.VolumeAvailable || got.Status == provisioner.VolumeError) {
				if err := tg.cloud.DeleteVolume(c, v.ID); err == nil {
					return
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("volume %s left behind", v.ID)
	})
	tg.volumeStatus(t, v.ID, provisioner.VolumeAvailable)
	return v
}

func (tg *target) volumeStatus(t *testing.T, id, want string) provisioner.Volume {
	t.Helper()
	var got provisioner.Volume
	waitFor(t, tg.patience, "volume "+id+" "+want, func() (bool, error) {
		var err error
		got, err = tg.cloud.Volume(ctx(t, time.Minute), id)
		if err == nil && got.Status == provisioner.VolumeError {
			err = errors.New("volume in error")
		}
		return err == nil && got.Status == want, err
	})
	return got
}

// active boots a server and waits until it is ACTIVE.
func (tg *target) active(t *testing.T, prefix string) (provisioner.Server, string) {
	t.Helper()
	tag := unique(prefix)
	s := tg.boot(t, unique(prefix), tag, map[string]string{"phoenix:group": tag})
	tg.serverStatus(t, tag, provisioner.StatusActive)
	return s, tag
}

// serverStatus waits for the one server of tag to reach status with no
// task in progress, and returns it as listed.
func (tg *target) serverStatus(t *testing.T, tag, status string) provisioner.Server {
	t.Helper()
	var got provisioner.Server
	waitFor(t, tg.patience, "server "+tag+" "+status, func() (bool, error) {
		list := tg.byTag(t, tag)
		if len(list) != 1 {
			return false, nil
		}
		got = list[0]
		if got.Status == provisioner.StatusError {
			return false, errors.New("server in ERROR: " + got.Fault)
		}
		return got.Status == status && got.TaskState == "", nil
	})
	return got
}

func (tg *target) volumeLifecycle(t *testing.T) {
	tg.needCinder(t)
	key := unique("vol")
	v := tg.volume(t, key, map[string]string{"phoenix_contract": key, "phoenix:role": "data"})
	if v.Size != 1 || v.Bootable || len(v.Attachments) != 0 {
		t.Errorf("fresh volume: %+v", v)
	}
	if err := tg.cloud.SetVolumeMetadata(ctx(t, time.Minute), v.ID, map[string]string{"phoenix:phase": "handover"}); err != nil {
		t.Fatal(err)
	}
	got, err := tg.cloud.Volume(ctx(t, time.Minute), v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata["phoenix:phase"] != "handover" || got.Metadata["phoenix:role"] != "data" {
		t.Errorf("metadata after a merge: %v", got.Metadata)
	}
	list, err := tg.cloud.VolumesWith(ctx(t, time.Minute), map[string]string{"phoenix_contract": key})
	if err != nil || len(list) != 1 || list[0].ID != v.ID {
		t.Errorf("volumes by metadata: %+v, %v; want only %s", list, err, v.ID)
	}
	if _, err := tg.cloud.Volume(ctx(t, time.Minute), "00000000-0000-4000-8000-000000000000"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("a missing volume: %v, want ErrNotFound", err)
	}
}

// refusedStatus is the HTTP status of a refusal, 0 for another error.
func refusedStatus(err error) int {
	var r *provisioner.RefusedError
	if errors.As(err, &r) {
		return r.Status
	}
	return 0
}

func (tg *target) volumeAttachments(t *testing.T) {
	tg.needCinder(t)
	key := unique("att")
	v := tg.volume(t, key, map[string]string{"phoenix_contract": key})
	first, firstTag := tg.active(t, "att-a")
	second, secondTag := tg.active(t, "att-b")
	c := ctx(t, 5*time.Minute)

	if err := tg.cloud.AttachVolume(c, first.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	got := tg.volumeStatus(t, v.ID, provisioner.VolumeInUse)
	if !got.AttachedTo(first.ID) || len(got.Attachments) != 1 || got.Attachments[0].Device == "" {
		t.Errorf("attachments after attach: %+v", got.Attachments)
	}
	if listed := tg.serverStatus(t, firstTag, provisioner.StatusActive); !slices.Contains(listed.Volumes, v.ID) {
		t.Errorf("the server list shows volumes %v, want %s", listed.Volumes, v.ID)
	}

	// A volume on a server cannot go to another: the cloud refuses.
	err := tg.cloud.AttachVolume(c, second.ID, v.ID)
	if err == nil {
		t.Fatal("a volume in use was attached to a second server")
	}
	t.Logf("%s: attaching a volume in use to a second server: %v", tg.name, err)
	// Nova checks the volume's attachments itself and answers 400
	// "Invalid volume: volume … is already attached to instances: …".
	if st := refusedStatus(err); st != 400 || !strings.Contains(err.Error(), "already attached") {
		t.Errorf("attach of a volume in use: HTTP %d (%v), want Nova's 400 \"already attached\"", st, err)
	}
	if got := tg.volumeStatus(t, v.ID, provisioner.VolumeInUse); !got.AttachedTo(first.ID) || got.AttachedTo(second.ID) {
		t.Errorf("after the refused attach: %+v", got.Attachments)
	}

	// Cinder keeps a volume in use.
	if err := tg.cloud.DeleteVolume(c, v.ID); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("delete of a volume in use: %v, want Cinder's 400", err)
	}

	// A backup of a volume in use needs force.
	snap, err := tg.cloud.SnapshotVolume(c, v.ID, key+"-snap", map[string]string{"phoenix_contract": key, "phoenix:backup-of": first.ID})
	if err != nil {
		t.Fatalf("forced snapshot of a volume in use: %v", err)
	}
	t.Cleanup(func() { _ = tg.cloud.DeleteVolumeSnapshot(context.Background(), snap.ID) })
	if snap.VolumeID != v.ID || snap.Size != 1 {
		t.Errorf("snapshot as created: %+v", snap)
	}
	waitFor(t, tg.patience, "snapshot available", func() (bool, error) {
		s, err := tg.cloud.VolumeSnapshot(c, snap.ID)
		if err == nil && s.Status == provisioner.VolumeError {
			err = errors.New("snapshot in error")
		}
		return err == nil && s.Status == provisioner.VolumeAvailable, err
	})
	snaps, err := tg.cloud.VolumeSnapshotsWith(c, map[string]string{"phoenix_contract": key})
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID || snaps[0].Metadata["phoenix:backup-of"] != first.ID {
		t.Errorf("snapshots by metadata: %+v, %v; want only %s", snaps, err, snap.ID)
	}
	if other, err := tg.cloud.VolumeSnapshotsWith(c, map[string]string{"phoenix_contract": key + "-none"}); err != nil || len(other) != 0 {
		t.Errorf("snapshots by metadata nobody has: %+v, %v", other, err)
	}

	// Handover: detach, then attach to the second server.
	if err := tg.cloud.DetachVolume(c, first.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	tg.volumeStatus(t, v.ID, provisioner.VolumeAvailable)
	if err := tg.cloud.DetachVolume(c, first.ID, v.ID); err != nil {
		t.Errorf("detaching a detached volume: %v, want nil", err)
	}
	waitFor(t, tg.patience, "the volume gone from the first server's list", func() (bool, error) {
		return !slices.Contains(tg.byTag(t, firstTag)[0].Volumes, v.ID), nil
	})
	if err := tg.cloud.AttachVolume(c, second.ID, v.ID); err != nil {
		t.Fatal(err)
	}
	if got := tg.volumeStatus(t, v.ID, provisioner.VolumeInUse); !got.AttachedTo(second.ID) {
		t.Errorf("attachments after the handover: %+v", got.Attachments)
	}
	if listed := tg.serverStatus(t, secondTag, provisioner.StatusActive); !slices.Contains(listed.Volumes, v.ID) {
		t.Errorf("the second server lists volumes %v", listed.Volumes)
	}

	if err := tg.cloud.DeleteVolumeSnapshot(c, snap.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tg.patience, "snapshot gone", func() (bool, error) {
		_, err := tg.cloud.VolumeSnapshot(c, snap.ID)
		return errors.Is(err, provisioner.ErrNotFound), nil
	})
	if err := tg.cloud.DeleteVolumeSnapshot(c, snap.ID); err != nil {
		t.Errorf("deleting a deleted snapshot: %v, want nil", err)
	}
}

func (tg *target) stopStart(t *testing.T) {
	s, tag := tg.active(t, "power")
	c := ctx(t, 5*time.Minute)
	if err := tg.cloud.StopServer(c, s.ID); err != nil {
		t.Fatal(err)
	}
	off := tg.serverStatus(t, tag, provisioner.StatusShutoff)
	if off.ID != s.ID {
		t.Errorf("stopped server %s, listed %s", s.ID, off.ID)
	}
	if err := tg.cloud.StopServer(c, s.ID); err != nil {
		t.Errorf("stopping a stopped server: %v, want nil", err)
	}
	if err := tg.cloud.SetServerMetadata(c, s.ID, map[string]string{"phoenix:phase": "stopped"}); err != nil {
		t.Errorf("metadata of a stopped server: %v", err)
	}
	if err := tg.cloud.StartServer(c, s.ID); err != nil {
		t.Fatal(err)
	}
	on := tg.serverStatus(t, tag, provisioner.StatusActive)
	if on.Metadata["phoenix:phase"] != "stopped" {
		t.Errorf("metadata after start: %v", on.Metadata)
	}
	if err := tg.cloud.StartServer(c, s.ID); err != nil {
		t.Errorf("starting an active server: %v, want nil", err)
	}
	if err := tg.cloud.StopServer(c, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("stopping a missing server: %v, want ErrNotFound", err)
	}
}

// pauseSuspend: a server paused or suspended behind Phoenix's back lists
// as PAUSED or SUSPENDED, takes metadata (Phoenix records its delete on
// it), and comes back ACTIVE.
func (tg *target) pauseSuspend(t *testing.T) {
	s, tag := tg.active(t, "pause")
	c := ctx(t, 5*time.Minute)
	for _, step := range []struct {
		name      string
		off, on   func(context.Context, *gophercloud.ServiceClient, string) error
		offStatus string
	}{
		{"pause", func(c context.Context, sc *gophercloud.ServiceClient, id string) error {
			return servers.Pause(c, sc, id).ExtractErr()
		},
			func(c context.Context, sc *gophercloud.ServiceClient, id string) error {
				return servers.Unpause(c, sc, id).ExtractErr()
			}, "PAUSED"},
		{"suspend", func(c context.Context, sc *gophercloud.ServiceClient, id string) error {
			return servers.Suspend(c, sc, id).ExtractErr()
		},
			func(c context.Context, sc *gophercloud.ServiceClient, id string) error {
				return servers.Resume(c, sc, id).ExtractErr()
			}, "SUSPENDED"},
	} {
		if err := step.off(c, tg.compute, s.ID); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		tg.serverStatus(t, tag, step.offStatus)
		if err := tg.cloud.SetServerMetadata(c, s.ID, map[string]string{"phoenix:phase": step.name}); err != nil {
			t.Errorf("metadata of a %s server: %v", step.offStatus, err)
		}
		if err := step.on(c, tg.compute, s.ID); err != nil {
			t.Fatalf("undo %s: %v", step.name, err)
		}
		if on := tg.serverStatus(t, tag, provisioner.StatusActive); on.Metadata["phoenix:phase"] != step.name {
			t.Errorf("metadata after %s: %v", step.name, on.Metadata)
		}
	}
}

func (tg *target) rebuildInPlace(t *testing.T) {
	s, tag := tg.active(t, "rebuild")
	before := tg.serverStatus(t, tag, provisioner.StatusActive)
	img := tg.publish(t, unique("rebuild-image"), nil, nil)
	c := ctx(t, 5*time.Minute)
	md := map[string]string{"phoenix:group": tag, "phoenix:revision": "r2"}
	if err := tg.cloud.RebuildServer(c, s.ID, img.ID, md); err != nil {
		t.Fatal(err)
	}
	if list := tg.byTag(t, tag); len(list) == 1 && list[0].Status != provisioner.StatusRebuild && list[0].ImageID != img.ID {
		t.Errorf("right after rebuild: status %s image %s", list[0].Status, list[0].ImageID)
	}
	after := tg.serverStatus(t, tag, provisioner.StatusActive)
	if after.ID != before.ID || after.ImageID != img.ID {
		t.Errorf("rebuilt server %s on image %s, want %s on %s", after.ID, after.ImageID, before.ID, img.ID)
	}
	if !equalAddresses(after.Addresses, before.Addresses) {
		t.Errorf("addresses changed: %v → %v", before.Addresses, after.Addresses)
	}
	if after.Metadata["phoenix:revision"] != "r2" {
		t.Errorf("metadata after rebuild: %v", after.Metadata)
	}
	if err := tg.cloud.RebuildServer(c, "00000000-0000-4000-8000-000000000000", img.ID, nil); !errors.Is(err, provisioner.ErrNotFound) {
		t.Errorf("rebuilding a missing server: %v, want ErrNotFound", err)
	}
}

func equalAddresses(a, b map[string][]string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
