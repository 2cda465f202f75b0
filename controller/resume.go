package controller

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// Resumed says what Resume did.
type Resumed struct {
	// Halts is how many servers carried a halt record, now removed.
	Halts int
	// Promoted is how many servers now carry the promotion of a paused
	// canary (the rest of the rollout goes on).
	Promoted int
	// Rejections is how many servers carried a rollback that was lifted
	// (the rejected image is tried again).
	Rejections int
}

// Resume lets a group go on: it lifts a halted rollout (removes the halt
// record and the rollout's failure count, so the next reconcile — of any
// Phoenix, a daemon included — tries the revision again with a fresh
// failure budget) and promotes a canary that waits for it (records on the
// servers that the desired image and revision passed, and when). A group
// rolled back and not halted has its rollback lifted: the rejected image
// is tried again, with a fresh failure budget.
func Resume(ctx context.Context, cloud provisioner.Cloud, g config.Group) (Resumed, error) {
	var res Resumed
	r := NewGroupReconciler(g, cloud, nil, nil, Options{})
	defer r.Close()
	w, err := r.observe(ctx, lookRecords)
	if err != nil {
		return res, err
	}
	key := rolloutKey(w.image.ID, r.revision)
	now := r.opts.Now()
	lift := w.rollingBack && !w.record.haltSeen
	selected := rolloutKey(w.selected.ID, r.revision)
	var mu sync.Mutex
	err = parallel(w.servers, 8, func(s provisioner.Server) error {
		if !acceptsMetadata(s.Status, s.TaskState) {
			return nil
		}
		md := map[string]string{}
		if s.Metadata[MetaHalted] != "" {
			md[MetaHalted], md[MetaHaltReason] = "", ""
		}
		if k, _, _ := strings.Cut(s.Metadata[MetaProgress], " "); k == key && (s.Metadata[MetaHalted] != "" || w.record.haltSeen) {
			maps.Copy(md, progressMetadata(key, plan.Progress{}))
		}
		if lift && s.Metadata[MetaRejected] != "" {
			md[MetaRejected], md[MetaRejectReason] = "", ""
			if k, _, _ := strings.Cut(s.Metadata[MetaProgress], " "); k == selected {
				maps.Copy(md, progressMetadata(selected, plan.Progress{}))
			}
		}
		if k, _, _ := strings.Cut(s.Metadata[MetaCanaryPassed], " "); g.Rollout.PauseAfterCanary && k != key {
			maps.Copy(md, promotionMetadata(key, now))
		}
		if len(md) == 0 {
			return nil
		}
		if err := r.cloud.Servers.SetServerMetadata(ctx, s.ID, md); err != nil {
			return fmt.Errorf("resume on server %s (%s): %w", s.Name, s.ID, err)
		}
		mu.Lock()
		if _, ok := md[MetaHalted]; ok {
			res.Halts++
		}
		if _, ok := md[MetaCanaryPassed]; ok {
			res.Promoted++
		}
		if _, ok := md[MetaRejected]; ok {
			res.Rejections++
		}
		mu.Unlock()
		return nil
	})
	return res, err
}
