package provisioner

import (
	"context"
	"time"
)

// Volumes is the part of a cloud that holds a group's data outside its
// servers: block-storage volumes (Cinder on OpenStack), their snapshots,
// and attaching them to servers (through Nova, which tells Cinder).
//
// Phoenix needs it for two things a fresh boot alone cannot do: to back a
// data volume up before the server holding it goes, and to move a data
// volume from an old server to its replacement. Both are written so that a
// restarted controller can find its work again: volumes and snapshots are
// found by metadata, never by a name or an ID kept in memory.
//
// Every call returns once the cloud has accepted the request; the states
// it leads through (creating, attaching, detaching, deleting) are observed
// with Volume and VolumeSnapshot, never assumed.
type Volumes interface {
	// Volume reads one volume. A volume that does not exist (any more)
	// gives an error wrapping ErrNotFound.
	Volume(ctx context.Context, id string) (Volume, error)

	// VolumesWith lists the volumes carrying every key and value of
	// metadata. The filter is sent to the cloud and checked again on the
	// answer, so a filter the cloud ignores never widens the result.
	VolumesWith(ctx context.Context, metadata map[string]string) ([]Volume, error)

	// SetVolumeMetadata merges the keys into the volume's metadata; other
	// keys stay.
	SetVolumeMetadata(ctx context.Context, id string, metadata map[string]string) error

	// SnapshotVolume starts a snapshot of a volume, attached or not (it is
	// forced: a snapshot of a volume in use is crash-consistent, which is
	// what a backup before deleting a server can have). The snapshot is
	// returned as the cloud first reports it, usually "creating".
	SnapshotVolume(ctx context.Context, volumeID, name string, metadata map[string]string) (VolumeSnapshot, error)

	// VolumeSnapshot reads one snapshot; ErrNotFound wrapped when gone.
	VolumeSnapshot(ctx context.Context, id string) (VolumeSnapshot, error)

	// VolumeSnapshotsWith lists the snapshots carrying every key and value
	// of metadata, checked again on the answer as VolumesWith does.
	VolumeSnapshotsWith(ctx context.Context, metadata map[string]string) ([]VolumeSnapshot, error)

	// DeleteVolumeSnapshot asks the cloud to delete a snapshot. One that is
	// already gone counts as deleted (nil error).
	DeleteVolumeSnapshot(ctx context.Context, id string) error

	// AttachVolume asks the compute service to attach an available volume
	// to a server. A volume is never attached to two servers at once: the
	// cloud refuses a volume that is not available.
	AttachVolume(ctx context.Context, serverID, volumeID string) error

	// DetachVolume asks the compute service to detach a volume from a
	// server. A volume that is not attached to it (any more) counts as
	// detached (nil error).
	DetachVolume(ctx context.Context, serverID, volumeID string) error
}

// ServerActions changes a server's power state or image in place, keeping
// its ID, ports, addresses and attached volumes: what a stateful handover
// (stop the old server before its volume moves) and a rebuild in place
// need. Each call returns once the compute service has accepted the
// action; the server's status says when it is done.
type ServerActions interface {
	// StopServer powers a server off (status SHUTOFF once done). A server
	// that is already SHUTOFF is stopped (nil error).
	StopServer(ctx context.Context, id string) error

	// StartServer powers a stopped server on (ACTIVE once done). A server
	// that is already ACTIVE is started (nil error).
	StartServer(ctx context.Context, id string) error

	// RebuildServer reimages a server with imageID (status REBUILD, then
	// ACTIVE). metadata, when not nil, replaces the server's metadata, as
	// the compute service does with a rebuild's metadata; nil keeps it.
	RebuildServer(ctx context.Context, id, imageID string, metadata map[string]string) error
}

// Volume statuses as Cinder reports them. Only the ones a caller waits
// for or acts on are named. A snapshot's statuses are the same words:
// creating, available, deleting, error.
const (
	VolumeCreating  = "creating"
	VolumeAvailable = "available"
	VolumeAttaching = "attaching"
	VolumeInUse     = "in-use"
	VolumeDetaching = "detaching"
	VolumeDeleting  = "deleting"
	VolumeError     = "error"
)

// Volume is one block-storage volume as observed in the cloud.
type Volume struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	// Size is in GiB.
	Size     int               `json:"size_gib"`
	Bootable bool              `json:"bootable"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Attachments lists the servers the volume is attached to: at most
	// one for the volumes Phoenix handles (no multi-attach).
	Attachments []VolumeAttachment `json:"attachments,omitempty"`
	Created     time.Time          `json:"created"`
}

// VolumeAttachment is a volume's attachment to one server.
type VolumeAttachment struct {
	ServerID string `json:"server_id"`
	// Device is the device name the compute service chose, such as
	// /dev/vdb; a hint only: the guest may name it otherwise.
	Device string `json:"device,omitempty"`
}

// AttachedTo reports whether the volume is attached to the server.
func (v Volume) AttachedTo(serverID string) bool {
	for _, a := range v.Attachments {
		if a.ServerID == serverID {
			return true
		}
	}
	return false
}

// VolumeSnapshot is a block-storage snapshot of one volume.
type VolumeSnapshot struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	VolumeID string `json:"volume_id"`
	Status   string `json:"status"`
	// Size is in GiB, the size of the volume when it was taken.
	Size     int               `json:"size_gib"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Created  time.Time         `json:"created"`
}
