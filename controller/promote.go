package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// promote takes a stage's step of the round: the tag on the image the
// group has run healthy long enough (then its record on the servers), or
// the tag off an image the group promoted and then rejected. Glance is
// the record other stages read; the servers' record says the group did it.
func (r *GroupReconciler) promote(ctx context.Context, w world, p *plan.Promotion, now time.Time) {
	if p == nil {
		return
	}
	if p.Untag != "" {
		r.withdraw(ctx, w, p, now)
	}
	if bugOn(BugPromoteEarly) && !p.Done && p.Untag == "" {
		p.Now = true
	}
	if p.Done {
		staged := w.record.staged
		r.mu.Lock()
		if r.staged.At.After(staged.At) {
			staged = r.staged // a write to the servers that failed
		}
		r.mu.Unlock()
		r.spreadPromoted(ctx, w.servers, staged)
		return
	}
	if !p.Now {
		return
	}
	if err := r.cloud.Images.TagImage(ctx, p.ImageID, p.Tag); err != nil {
		r.mu.Lock()
		first := r.promoteFailed == ""
		r.promoteFailed = err.Error()
		r.mu.Unlock()
		r.log.Warn("could not promote the image: the stage waits", zap.String("image", p.ImageID), zap.String("tag", p.Tag), zap.Error(err))
		if first {
			r.emit(Event{Type: EventPromoteFailed, Image: p.ImageID, Reason: err.Error(), Message: fmt.Sprintf(
				"group %s could not add tag %q to image %s (%s): %s. The stage waits and tries again each round; "+
					"the Phoenix user needs to tag images (Glance's modify_image: a member of the image owner's project, or an admin).",
				r.group.Name, p.Tag, w.image.Name, p.ImageID, err)})
		}
		return
	}
	staged := plan.PromotedImage{ImageID: p.ImageID, Tag: p.Tag, At: now}
	r.mu.Lock()
	r.promoteFailed, r.staged = "", staged
	r.mu.Unlock()
	r.recordOnServers(ctx, holders(w.servers), promotedMetadata(staged), "promotion")
	r.log.Info("image promoted", zap.String("image", p.ImageID), zap.String("image_name", w.image.Name), zap.String("tag", p.Tag),
		zap.Duration("healthy_for", now.Sub(p.Since)))
	r.emit(Event{Type: EventImagePromoted, Image: p.ImageID, Reason: p.Tag, Message: fmt.Sprintf(
		"group %s promoted image %s (%s): its servers served healthy for %s (promote.after %s), so the image now carries tag %q and the groups that require it take it.",
		r.group.Name, w.image.Name, p.ImageID, now.Sub(p.Since).Round(time.Second), r.group.Promote.After, p.Tag)})
}

// withdraw takes the stage's tag off an image the group promoted and then
// rejected, and clears the record once Glance has.
func (r *GroupReconciler) withdraw(ctx context.Context, w world, p *plan.Promotion, now time.Time) {
	if err := r.cloud.Images.UntagImage(ctx, p.Untag, p.Tag); err != nil {
		r.log.Warn("could not take the tag back from a rejected image", zap.String("image", p.Untag), zap.String("tag", p.Tag), zap.Error(err))
		return
	}
	gone := plan.PromotedImage{At: now}
	r.mu.Lock()
	r.staged = gone
	r.mu.Unlock()
	r.recordOnServers(ctx, holders(w.servers), promotedMetadata(gone), "promotion withdrawn")
	r.log.Warn("tag taken back from a rejected image", zap.String("image", p.Untag), zap.String("tag", p.Tag))
	r.emit(Event{Type: EventImageWithdrawn, Image: p.Untag, Reason: p.Tag, Message: fmt.Sprintf(
		"group %s rejected image %s, which it had promoted: tag %q is taken off it, so the groups that require the tag go back to the newest image that carries it.",
		r.group.Name, p.Untag, p.Tag)})
}

// spreadPromoted writes the promotion on record on the servers that can
// take it and lack it, so that it outlives the servers it was written on.
func (r *GroupReconciler) spreadPromoted(ctx context.Context, servers []provisioner.Server, staged plan.PromotedImage) {
	if staged.At.IsZero() {
		return
	}
	md := promotedMetadata(staged)
	to := slices.DeleteFunc(holders(servers), func(s provisioner.Server) bool {
		return s.Metadata[MetaPromoted] == md[MetaPromoted] && s.Metadata[MetaPromotedTag] == md[MetaPromotedTag]
	})
	if len(to) > 0 {
		r.recordOnServers(ctx, to, md, "promotion")
	}
}
