package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Volume backups (backup.volumes: snapshot). A server that holds data
// keeps it on Cinder volumes, and deleting the server must never be the
// moment that data is lost for good: before an old server goes, each
// volume attached to it is snapshotted, and the delete waits until every
// snapshot is available. With backup.every the volumes of the group's
// servers are also snapshotted on that schedule. backup.keep and
// backup.max_age apply to each volume's snapshots separately.
//
// Snapshots carry metadata naming the group, server, volume, kind and
// time. Phoenix finds them again by it — after a restart, to never take
// one twice nor delete a server before its snapshot exists — and
// retention lists only snapshots with the group's metadata, so no other
// snapshot is ever touched.

// Cinder's snapshot statuses that Phoenix acts on.
const (
	snapAvailable = provisioner.VolumeAvailable
	snapCreating  = "creating"
)

// needsVolumeSnapshots says whether a server's delete waits for snapshots
// of its volumes: with volume backups on, any server with volumes that
// may hold data — not a new one that failed before it ever served.
func (r *GroupReconciler) needsVolumeSnapshots(c plan.Classified) bool {
	if r.group.Backup.Volumes != config.VolumesSnapshot || len(c.Volumes) == 0 {
		return false
	}
	return c.Kind != plan.KindFailed || c.Served() || c.Compromised != ""
}

// volumesFirst makes sure every volume attached to the server has an
// available pre-delete snapshot, and says whether the server may go now.
func (r *GroupReconciler) volumesFirst(ctx context.Context, c plan.Classified, now time.Time) (bool, error) {
	ready := true
	for _, vol := range c.Volumes {
		ok, err := r.volumeSnapshotted(ctx, c, vol, KindPreDelete, now)
		if err != nil {
			return false, err
		}
		ready = ready && ok
	}
	return ready, nil
}

// volumeSnapshotted finds the snapshot of one volume of the server taken
// before a delete or a handover (kind), takes it when there is none (or
// only failed ones), and says whether it is available.
func (r *GroupReconciler) volumeSnapshotted(ctx context.Context, c plan.Classified, vol, kind string, now time.Time) (bool, error) {
	snaps, err := r.cloud.Volumes.VolumeSnapshotsWith(ctx, map[string]string{PropServer: c.ID, PropVolume: vol, PropKind: kind})
	if err != nil {
		return false, fmt.Errorf("look for the snapshot of volume %s of server %s: %w", vol, c.Name, err)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Created.After(snaps[j].Created) })
	for _, s := range snaps {
		switch s.Status {
		case snapAvailable:
			return true, nil
		case snapCreating:
			if waited := now.Sub(s.Created); !s.Created.IsZero() && waited > r.group.Backup.Timeout.D() {
				return false, fmt.Errorf("snapshot %s of volume %s of server %s is still %s after %s (backup.timeout): the server is kept until it is available",
					s.ID, vol, c.Name, s.Status, waited.Round(time.Second))
			}
			return false, nil
		}
		// error, deleting: a failed snapshot; take another.
	}
	name := truncate(fmt.Sprintf("phoenix-%s-%s-%s-%s", r.group.Name, c.Name, vol, now.UTC().Format("20060102T150405Z")), 255)
	s, err := r.cloud.Volumes.SnapshotVolume(ctx, vol, name, r.snapshotMetadata(c.ID, vol, kind, now))
	if err != nil {
		return false, fmt.Errorf("snapshot volume %s of server %s (%s): %w", vol, c.Name, kind, err)
	}
	r.log.Info("snapshotting a volume before its server's delete", zap.String("server", c.ID), zap.String("name", c.Name),
		zap.String("volume", vol), zap.String("snapshot", s.ID))
	r.emit(Event{Type: EventVolumeSnapshot, Server: c.ID, Name: c.Name, Message: fmt.Sprintf("snapshot %s of volume %s started", s.ID, vol)})
	return s.Status == snapAvailable, nil
}

func (r *GroupReconciler) snapshotMetadata(server, vol, kind string, now time.Time) map[string]string {
	return map[string]string{PropGroup: r.group.Name, PropServer: server, PropVolume: vol, PropKind: kind,
		PropTakenAt: formatTime(now)}
}

// scheduleVolumeSnapshots takes, with backup.every, a snapshot of each
// volume of the group's serving servers whose newest snapshot is older
// than that. It does not wait for them.
func (r *GroupReconciler) scheduleVolumeSnapshots(ctx context.Context, servers []plan.Classified, now time.Time) error {
	every := r.group.Backup.Every.D()
	if every <= 0 || r.group.Backup.Volumes != config.VolumesSnapshot {
		return nil
	}
	r.mu.Lock()
	due := now.Sub(r.lastSchedule) >= min(every, time.Minute)
	if due {
		r.lastSchedule = now
	}
	r.mu.Unlock()
	if !due {
		return nil // at most one look a minute: it lists the group's snapshots
	}
	var todo []plan.Classified
	for _, c := range servers {
		if len(c.Volumes) > 0 && (c.Kind == plan.KindCurrent || c.Kind == plan.KindOld) && c.Status == provisioner.StatusActive {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	snaps, err := r.cloud.Volumes.VolumeSnapshotsWith(ctx, map[string]string{PropGroup: r.group.Name})
	if err != nil {
		return fmt.Errorf("list the volume snapshots of group %s: %w", r.group.Name, err)
	}
	// When each volume was last snapshotted, by Phoenix's own record of
	// it (the cloud's clock may differ).
	newest := map[string]time.Time{}
	for _, s := range snaps {
		vol := s.Metadata[PropVolume]
		taken, ok := parseTime(s.Metadata[PropTakenAt])
		if !ok {
			taken = s.Created
		}
		if s.Status != provisioner.VolumeError && taken.After(newest[vol]) {
			newest[vol] = taken
		}
	}
	var errs []error
	for _, c := range todo {
		for _, vol := range c.Volumes {
			if now.Sub(newest[vol]) < every {
				continue
			}
			name := truncate(fmt.Sprintf("phoenix-%s-%s-%s-%s", r.group.Name, c.Name, vol, now.UTC().Format("20060102T150405Z")), 255)
			s, err := r.cloud.Volumes.SnapshotVolume(ctx, vol, name, r.snapshotMetadata(c.ID, vol, KindScheduled, now))
			if err != nil {
				errs = append(errs, fmt.Errorf("scheduled snapshot of volume %s of server %s: %w", vol, c.Name, err))
				continue
			}
			r.log.Info("scheduled volume snapshot", zap.String("server", c.ID), zap.String("volume", vol), zap.String("snapshot", s.ID))
			r.emit(Event{Type: EventVolumeSnapshot, Server: c.ID, Name: c.Name, Message: fmt.Sprintf("scheduled snapshot %s of volume %s started", s.ID, vol)})
		}
	}
	if err := r.retainVolumes(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// retainVolumes applies backup.keep and backup.max_age to each volume's
// snapshots that carry the group's metadata (plan.Retain chooses).
// Snapshots still being made, and any snapshot without the group's
// metadata, are never touched.
func (r *GroupReconciler) retainVolumes(ctx context.Context, now time.Time) error {
	b := r.group.Backup
	if b.Keep == 0 && b.MaxAge == 0 {
		return nil
	}
	snaps, err := r.cloud.Volumes.VolumeSnapshotsWith(ctx, map[string]string{PropGroup: r.group.Name})
	if err != nil {
		return fmt.Errorf("list the volume snapshots of group %s: %w", r.group.Name, err)
	}
	byVolume := map[string][]plan.Snapshot{}
	names := map[string]string{}
	for _, s := range snaps {
		if vol := s.Metadata[PropVolume]; s.Status == snapAvailable && s.Metadata[PropGroup] == r.group.Name && vol != "" {
			byVolume[vol] = append(byVolume[vol], plan.Snapshot{ID: s.ID, Created: s.Created})
			names[s.ID] = s.Name
		}
	}
	var errs []error
	for _, vol := range slices.Sorted(maps.Keys(byVolume)) {
		for _, e := range plan.Retain(byVolume[vol], b.Keep, b.MaxAge.D(), now) {
			if err := r.cloud.Volumes.DeleteVolumeSnapshot(ctx, e.ID); err != nil {
				errs = append(errs, fmt.Errorf("delete snapshot %s of volume %s: %w", e.ID, vol, err))
				continue
			}
			why := e.Why + " for volume " + vol
			r.log.Info("deleted an old volume snapshot", zap.String("snapshot", e.ID), zap.String("volume", vol), zap.String("why", why))
			r.emit(Event{Type: EventSnapshotDeleted, Name: names[e.ID], Reason: why, Message: "volume snapshot " + e.ID})
		}
	}
	return errors.Join(errs...)
}
