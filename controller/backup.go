package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Snapshots of servers before their delete (backup.snapshot_before_delete):
// Nova's createImage, with the Glance properties of the record schema by
// which Phoenix finds them again — after a restart, to never take one
// twice, and for retention, which touches no other image.

// needsSnapshot says whether a server's delete waits for a snapshot: with
// backups on, every server that may hold something (it ran) — but not a
// failed new one, which never served. A compromised server is kept for
// forensics.
func (r *GroupReconciler) needsSnapshot(c plan.Classified) bool {
	if !r.group.Backup.SnapshotBeforeDelete {
		return false
	}
	switch c.Status {
	case plan.StatusActive, plan.StatusShutoff:
	default:
		return false
	}
	return c.Kind != plan.KindFailed || c.Compromised != ""
}

// snapshotFirst makes sure a snapshot of the server exists and is active,
// and says whether the server may go now. The snapshot is found by its
// properties each time, so a restart (or a lost answer) never takes a
// second one, and a delete never comes before the image is active.
func (r *GroupReconciler) snapshotFirst(ctx context.Context, c plan.Classified, now time.Time) (bool, error) {
	imgs, err := r.cloud.Snapshots.ImagesWith(ctx, map[string]string{PropServer: c.ID, PropKind: KindPreDelete})
	if err != nil {
		return false, fmt.Errorf("look for the snapshot of server %s: %w", c.Name, err)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.After(imgs[j].Created) })
	for _, img := range imgs {
		switch img.Status {
		case "active":
			return true, nil
		case "queued", "saving", "importing", "uploading":
			if waited := now.Sub(img.Created); waited > r.group.Backup.Timeout.D() && !img.Created.IsZero() {
				return false, fmt.Errorf("snapshot %s of server %s is still %s after %s (backup.timeout): the server is kept until it is active",
					img.ID, c.Name, img.Status, waited.Round(time.Second))
			}
			return false, nil // in progress
		}
		// killed, deleted, deactivated: a failed snapshot; take another.
	}
	if c.TaskState != "" {
		return false, nil // Nova is busy with the server (a snapshot in progress)
	}
	name := truncate(fmt.Sprintf("phoenix-%s-%s-%s", r.group.Name, c.Name, now.UTC().Format("20060102T150405Z")), 255)
	id, err := r.cloud.Snapshots.SnapshotServer(ctx, c.ID, name, map[string]string{
		PropGroup: r.group.Name, PropServer: c.ID, PropKind: KindPreDelete, PropTakenAt: formatTime(now),
	})
	if err != nil {
		return false, fmt.Errorf("snapshot server %s before its delete: %w", c.Name, err)
	}
	r.log.Info("snapshotting server before its delete", zap.String("server", c.ID), zap.String("name", c.Name), zap.String("image", id))
	r.emit(Event{Type: EventSnapshot, Server: c.ID, Name: c.Name, Image: id, Message: "snapshot " + name + " started"})
	return false, nil
}

// retain applies backup.keep and backup.max_age to the group's pre-delete
// snapshots (plan.Retain chooses). Only active snapshots are touched; only
// images with the group's properties are ever listed.
func (r *GroupReconciler) retain(ctx context.Context, now time.Time) error {
	b := r.group.Backup
	if b.Keep == 0 && b.MaxAge == 0 {
		return nil
	}
	imgs, err := r.cloud.Snapshots.ImagesWith(ctx, map[string]string{PropGroup: r.group.Name, PropKind: KindPreDelete})
	if err != nil {
		return fmt.Errorf("list the snapshots of group %s: %w", r.group.Name, err)
	}
	var active []plan.Snapshot
	names := map[string]string{}
	for _, img := range imgs {
		if img.Status == "active" {
			active = append(active, plan.Snapshot{ID: img.ID, Created: img.Created})
			names[img.ID] = img.Name
		}
	}
	var errs []error
	for _, e := range plan.Retain(active, b.Keep, b.MaxAge.D(), now) {
		if err := r.cloud.Snapshots.DeleteImage(ctx, e.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("deleted an old snapshot", zap.String("image", e.ID), zap.String("name", names[e.ID]), zap.String("why", e.Why))
		r.emit(Event{Type: EventSnapshotDeleted, Image: e.ID, Name: names[e.ID], Reason: e.Why})
	}
	return errors.Join(errs...)
}
