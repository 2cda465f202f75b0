package controller

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// Gold-image freshness. Phoenix keeps every server a fresh boot of the
// gold image, which protects nobody if the gold image itself falls behind
// on security updates: the pipeline that bakes it may have broken weeks
// ago without anyone noticing. A selector's image.max_age says how old its
// newest matching image may be; past that, the group raises an alert
// (event, log, status, metric, notice) that clears by itself when a newer
// image appears. It never changes what Phoenix does to servers.

// Freshness is what the last reconcile learnt of the age of a group's
// gold image.
type Freshness struct {
	// Image is the newest image the group's selector matched, Age how old
	// it was at the last reconcile; zero before the first.
	Image provisioner.Image
	Age   time.Duration
	// MaxAge is the selector's image.max_age (0: none); Stale says, while
	// the image is older than that, how and what to do.
	MaxAge time.Duration
	Stale  string
}

// ImageStaleness says how old img, the newest image g's selector
// matched, is at now, and — while that is more than the selector's
// image.max_age — the alert, which says what to do.
func ImageStaleness(g config.Group, img provisioner.Image, now time.Time) (age time.Duration, stale string) {
	maxAge := g.Image.MaxAge.D()
	age = max(0, now.Sub(img.Created))
	if maxAge > 0 && !img.Created.IsZero() && age > maxAge {
		stale = fmt.Sprintf("the newest gold image of group %s, %s (%s), was published %s ago, more than image.max_age %s allows: "+
			"check the pipeline that builds it; the alert clears when a newer image is published",
			g.Name, img.Name, img.ID, age.Round(time.Minute), maxAge)
	}
	return age, stale
}

// checkFreshness records the age of img and raises or clears the alert.
func (r *GroupReconciler) checkFreshness(img provisioner.Image, now time.Time) {
	maxAge := r.group.Image.MaxAge.D()
	age, stale := ImageStaleness(r.group, img, now)
	r.mu.Lock()
	was := r.freshness.Stale
	r.freshness = Freshness{Image: img, Age: age, MaxAge: maxAge, Stale: stale}
	r.mu.Unlock()
	switch {
	case stale != "" && was == "":
		r.log.Warn("gold image is stale", zap.String("image", img.ID), zap.Duration("age", age), zap.Duration("max_age", maxAge))
		r.emit(Event{Type: EventImageStale, Image: img.ID, Message: stale})
	case stale == "" && was != "":
		r.log.Info("gold image is fresh again", zap.String("image", img.ID), zap.Duration("age", age))
		r.emit(Event{Type: EventImageFresh, Image: img.ID,
			Message: fmt.Sprintf("group %s has a gold image newer than image.max_age again: %s (%s)", r.group.Name, img.Name, img.ID)})
	}
}

// Freshness reports the age of the group's gold image at the last
// reconcile.
func (r *GroupReconciler) Freshness() Freshness {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.freshness
}
