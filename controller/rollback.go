package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// RolledBack says what Rollback did: the image rejected, the image the
// group goes back to, and on how many servers the rollback is recorded.
type RolledBack struct {
	From, To provisioner.Image
	Servers  int
}

// ReasonByHand is the reason recorded for a rollback asked by hand.
const ReasonByHand = "rolled back by hand (phoenix rollback)"

// Rollback rejects the group's desired image on its revision and sends the
// group back to the image named by to (a name or an ID) or, when to is "",
// to the image it ran before, as its servers recorded. It only writes the
// record on the servers: the next reconcile (a daemon's, or a rebuild)
// replaces the servers with the same discipline as any rollout.
func Rollback(ctx context.Context, cloud provisioner.Cloud, g config.Group, to string) (RolledBack, error) {
	r := NewGroupReconciler(g, cloud, nil, nil, Options{})
	defer r.Close()
	w, err := r.observe(ctx, lookRecords)
	if err != nil {
		return RolledBack{}, err
	}
	j, back, err := r.rejectByHand(ctx, w, to)
	if err != nil {
		return RolledBack{}, err
	}
	res := RolledBack{From: w.selected, To: back}
	md := rejectionMetadata(j)
	var mu sync.Mutex
	err = parallel(holders(w.servers), 8, func(s provisioner.Server) error {
		if err := r.cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			return fmt.Errorf("record the rollback on server %s (%s): %w", s.Name, s.ID, err)
		}
		mu.Lock()
		res.Servers++
		mu.Unlock()
		return nil
	})
	if err == nil && res.Servers == 0 {
		err = fmt.Errorf("no server of group %s can take the record (none is settled): try again once one is", g.Name)
	}
	return res, err
}

// PreviewRollback is what a reconcile would do after Rollback, changing
// nothing: the image rejected, the image gone back to, and the decision.
func PreviewRollback(ctx context.Context, cloud provisioner.Cloud, g config.Group, to string) (RolledBack, plan.Decision, error) {
	r := NewGroupReconciler(g, cloud, nil, nil, Options{})
	defer r.Close()
	w, err := r.observe(ctx, lookToPreview)
	if err != nil {
		return RolledBack{}, plan.Decision{}, err
	}
	j, back, err := r.rejectByHand(ctx, w, to)
	if err != nil {
		return RolledBack{}, plan.Decision{}, err
	}
	w.rejection = j
	if err := r.rollBack(ctx, r.cloud.Images.ResolveImage, &w, j); err != nil {
		return RolledBack{}, plan.Decision{}, err
	}
	now := r.opts.Now()
	t := r.target(w, now)
	return RolledBack{From: w.selected, To: back}, plan.Plan(t, r.probeOnce(ctx, w, t, now), now), nil
}

// rejectByHand is the rejection `phoenix rollback` records: of the
// selector's image on this revision, to the image named, or else to the
// one the group ran before.
func (r *GroupReconciler) rejectByHand(ctx context.Context, w world, to string) (rejection, provisioner.Image, error) {
	from := w.selected
	now := r.opts.Now()
	var back provisioner.Image
	switch {
	case to != "":
		img, err := r.cloud.Images.ResolveImage(ctx, provisioner.ImageSelector{ID: to})
		if errors.Is(err, provisioner.ErrNotFound) {
			img, err = r.cloud.Images.ResolveImage(ctx, provisioner.ImageSelector{Name: to, Newest: true})
		}
		if err != nil {
			return rejection{}, back, fmt.Errorf("the image to go back to, %s: %w", to, err)
		}
		back = img
	case w.rollingBack:
		return rejection{}, back, fmt.Errorf("group %s is rolled back already, from image %s to %s: name another image with --to", r.group.Name, from.ID, w.image.ID)
	default:
		t := r.target(w, now)
		in := make([]plan.Server, len(w.servers))
		for i, s := range w.servers {
			in[i] = planServer(s)
		}
		prev := plan.Plan(t, in, now).Previous
		if prev.IsZero() || prev.ImageID == from.ID {
			return rejection{}, back, fmt.Errorf("group %s has no image before %s on record: name the image to go back to with --to", r.group.Name, from.ID)
		}
		img, err := r.cloud.Images.ResolveImage(ctx, provisioner.ImageSelector{ID: prev.ImageID})
		if err != nil {
			return rejection{}, back, fmt.Errorf("the image group %s ran before, %s: %w (name another with --to)", r.group.Name, prev.ImageID, err)
		}
		back = img
	}
	if back.ID == from.ID {
		return rejection{}, back, fmt.Errorf("image %s is the one group %s runs: name an earlier image with --to", back.ID, r.group.Name)
	}
	return rejection{rejected: plan.Ref{ImageID: from.ID, Revision: r.revision}, to: back.ID, at: now, reason: ReasonByHand}, back, nil
}
