package openstack

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// Volumes speak Cinder (block storage v3) for what a volume is and Nova's
// os-volume_attachments for attaching it: attaching through Cinder alone
// would leave Nova unaware, and the server would never see the disk.

var _ provisioner.Volumes = (*Cloud)(nil)

// volumeClient is the block-storage client, or an error naming the missing
// service: a cloud without Cinder serves every group that has no volumes.
func (c *Cloud) volumeClient() (*gophercloud.ServiceClient, error) {
	if c.volume == nil {
		return nil, fmt.Errorf("no block-storage (Cinder, catalog type volumev3) endpoint in the catalog: %w", c.volErr)
	}
	return c.volume, nil
}

// Volume reads one volume.
func (c *Cloud) Volume(ctx context.Context, id string) (provisioner.Volume, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return provisioner.Volume{}, fmt.Errorf("volume %s: %w", id, err)
	}
	v, err := volumes.Get(ctx, vc, id).Extract()
	if isNotFound(err) {
		return provisioner.Volume{}, fmt.Errorf("volume %s: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return provisioner.Volume{}, fmt.Errorf("get volume %s: %w", id, redact(err))
	}
	return toVolume(v), nil
}

// VolumesWith lists volumes by metadata, a page at a time. Cinder filters
// on metadata itself; the answer is checked again here all the same.
func (c *Cloud) VolumesWith(ctx context.Context, metadata map[string]string) ([]provisioner.Volume, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return nil, fmt.Errorf("list volumes with metadata %v: %w", metadata, err)
	}
	opts := volumes.ListOpts{Metadata: metadata, Limit: c.pageSize}
	var out []provisioner.Volume
	err = volumes.List(vc, opts).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := volumes.ExtractVolumes(page)
		if err != nil {
			return false, err
		}
		for i := range list {
			if hasMetadata(list[i].Metadata, metadata) {
				out = append(out, toVolume(&list[i]))
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes with metadata %v: %w", metadata, redact(err))
	}
	return out, nil
}

// SetVolumeMetadata merges keys into a volume's metadata: POST
// /volumes/{id}/metadata, which keeps the keys it is not given (PUT, and
// the metadata of a volume update, would replace them all).
func (c *Cloud) SetVolumeMetadata(ctx context.Context, id string, metadata map[string]string) error {
	vc, err := c.volumeClient()
	if err != nil {
		return fmt.Errorf("set metadata of volume %s: %w", id, err)
	}
	resp, err := vc.Post(ctx, vc.ServiceURL("volumes", id, "metadata"), map[string]any{"metadata": metadata}, nil,
		&gophercloud.RequestOpts{OkCodes: []int{200}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if isNotFound(err) {
		return fmt.Errorf("set metadata of volume %s: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("set metadata of volume %s: %w", id, redact(err))
	}
	return nil
}

// SnapshotVolume creates a snapshot with force set, which Cinder requires
// for a volume that is in use.
func (c *Cloud) SnapshotVolume(ctx context.Context, volumeID, name string, metadata map[string]string) (provisioner.VolumeSnapshot, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("snapshot volume %s: %w", volumeID, err)
	}
	s, err := snapshots.Create(ctx, vc, snapshots.CreateOpts{VolumeID: volumeID, Name: name, Force: true, Metadata: metadata}).Extract()
	if isNotFound(err) {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("snapshot volume %s: %w", volumeID, provisioner.ErrNotFound)
	}
	if err != nil {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("snapshot volume %s as %q: %w", volumeID, name, redact(err))
	}
	return toVolumeSnapshot(s), nil
}

// VolumeSnapshot reads one snapshot.
func (c *Cloud) VolumeSnapshot(ctx context.Context, id string) (provisioner.VolumeSnapshot, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("volume snapshot %s: %w", id, err)
	}
	s, err := snapshots.Get(ctx, vc, id).Extract()
	if isNotFound(err) {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("volume snapshot %s: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return provisioner.VolumeSnapshot{}, fmt.Errorf("get volume snapshot %s: %w", id, redact(err))
	}
	return toVolumeSnapshot(s), nil
}

// VolumeSnapshotsWith lists snapshots by metadata. gophercloud's snapshot
// ListOpts has no metadata filter, so the query is built here; Cinder
// reads it from microversion 3.22 (VolumeMicroversion) and drops it below,
// which the check on the answer makes harmless.
func (c *Cloud) VolumeSnapshotsWith(ctx context.Context, metadata map[string]string) ([]provisioner.VolumeSnapshot, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return nil, fmt.Errorf("list volume snapshots with metadata %v: %w", metadata, err)
	}
	q := snapshotQuery{ListOpts: snapshots.ListOpts{Limit: c.pageSize}, metadata: metadata}
	var out []provisioner.VolumeSnapshot
	err = snapshots.ListDetail(vc, q).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := snapshots.ExtractSnapshots(page)
		if err != nil {
			return false, err
		}
		for i := range list {
			if hasMetadata(list[i].Metadata, metadata) {
				out = append(out, toVolumeSnapshot(&list[i]))
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volume snapshots with metadata %v: %w", metadata, redact(err))
	}
	return out, nil
}

// DeleteVolumeSnapshot deletes a snapshot; one already gone is deleted.
func (c *Cloud) DeleteVolumeSnapshot(ctx context.Context, id string) error {
	vc, err := c.volumeClient()
	if err != nil {
		return fmt.Errorf("delete volume snapshot %s: %w", id, err)
	}
	err = snapshots.Delete(ctx, vc, id).ExtractErr()
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete volume snapshot %s: %w", id, redact(err))
	}
	return nil
}

// AttachVolume attaches through Nova, which reserves the volume in Cinder
// and refuses one that is not available: that refusal is what keeps a
// volume from being attached to two servers.
func (c *Cloud) AttachVolume(ctx context.Context, serverID, volumeID string) error {
	if _, err := c.volumeClient(); err != nil {
		return fmt.Errorf("attach volume %s to server %s: %w", volumeID, serverID, err)
	}
	_, err := volumeattach.Create(ctx, c.compute, serverID, volumeattach.CreateOpts{VolumeID: volumeID}).Extract()
	if isNotFound(err) {
		return fmt.Errorf("attach volume %s to server %s: %w", volumeID, serverID, provisioner.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("attach volume %s to server %s: %w", volumeID, serverID, refusal(err))
	}
	return nil
}

// DetachVolume detaches through Nova; Nova's 404 (the server has no such
// attachment, or is gone) means there is nothing left to detach.
func (c *Cloud) DetachVolume(ctx context.Context, serverID, volumeID string) error {
	if _, err := c.volumeClient(); err != nil {
		return fmt.Errorf("detach volume %s from server %s: %w", volumeID, serverID, err)
	}
	err := volumeattach.Delete(ctx, c.compute, serverID, volumeID).ExtractErr()
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("detach volume %s from server %s: %w", volumeID, serverID, refusal(err))
	}
	return nil
}

// CreateVolume creates an empty volume of size GiB. Phoenix itself never
// creates volumes (an operator or another tool does); the contract tests
// and the simulator's users do.
func (c *Cloud) CreateVolume(ctx context.Context, name string, size int, metadata map[string]string) (provisioner.Volume, error) {
	vc, err := c.volumeClient()
	if err != nil {
		return provisioner.Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	v, err := volumes.Create(ctx, vc, volumes.CreateOpts{Name: name, Size: size, Metadata: metadata}, nil).Extract()
	if err != nil {
		return provisioner.Volume{}, fmt.Errorf("create volume %s: %w", name, redact(err))
	}
	return toVolume(v), nil
}

// DeleteVolume deletes a volume; one already gone is deleted. Like
// CreateVolume it is for tests and tools, not for the controller.
func (c *Cloud) DeleteVolume(ctx context.Context, id string) error {
	vc, err := c.volumeClient()
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	err = volumes.Delete(ctx, vc, id, nil).ExtractErr()
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete volume %s: %w", id, redact(err))
	}
	return nil
}

// refusal turns a 4xx into a RefusedError carrying the cloud's message
// (a volume in the wrong state, a server in the wrong state), so callers
// can tell "the cloud said no" from "the cloud did not answer".
func refusal(err error) error {
	status, body, ok := statusOf(err)
	if ok && status >= 400 && status < 500 && status != 429 {
		return &provisioner.RefusedError{Status: status, Message: cloudMessage(body)}
	}
	return redact(err)
}

// hasMetadata reports whether have carries every key of want with its
// value.
func hasMetadata(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// snapshotQuery adds Cinder's metadata filter to a snapshot list. Cinder
// evaluates it as a Python literal, {'key': 'value', ...}, as gophercloud
// writes the volume list's.
type snapshotQuery struct {
	snapshots.ListOpts
	metadata map[string]string
}

func (q snapshotQuery) ToSnapshotListQuery() (string, error) {
	base, err := q.ListOpts.ToSnapshotListQuery()
	if err != nil || len(q.metadata) == 0 {
		return base, err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	values := u.Query()
	values.Set("metadata", pythonDict(q.metadata))
	u.RawQuery = values.Encode()
	return u.String(), nil
}

// pythonDict writes a map as Cinder's filters expect it, keys sorted so
// the query is stable.
func pythonDict(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("'%s': '%s'", pyEscape(k), pyEscape(m[k])))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func pyEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

func toVolume(v *volumes.Volume) provisioner.Volume {
	out := provisioner.Volume{
		ID: v.ID, Name: v.Name, Status: v.Status, Size: v.Size,
		Bootable: v.Bootable == "true", Metadata: v.Metadata, Created: v.CreatedAt,
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	for _, a := range v.Attachments {
		out.Attachments = append(out.Attachments, provisioner.VolumeAttachment{ServerID: a.ServerID, Device: a.Device})
	}
	return out
}

func toVolumeSnapshot(s *snapshots.Snapshot) provisioner.VolumeSnapshot {
	out := provisioner.VolumeSnapshot{
		ID: s.ID, Name: s.Name, VolumeID: s.VolumeID, Status: s.Status, Size: s.Size,
		Metadata: s.Metadata, Created: s.CreatedAt,
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	return out
}
