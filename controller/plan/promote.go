package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Promote is a stage's gate: once the group has converged on its image
// and every server has served healthy for After, the image gets Tag in
// Glance, and the stages that require Tag take it.
type Promote struct {
	Tag   string
	After time.Duration
}

// PromotedImage is the group's record of the last image it tagged: written on
// its servers once Glance took the tag, so that a restart neither tags
// again nor forgets what to take back when the image is rejected.
type PromotedImage struct {
	ImageID, Tag string
	At           time.Time
}

// Promotion is a stage's gate this round.
type Promotion struct {
	Tag     string `json:"tag"`
	ImageID string `json:"image"`
	// Now: add Tag to ImageID this round, then record it.
	Now bool `json:"-"`
	// Done: ImageID carries Tag, or the group recorded adding it.
	Done bool `json:"done,omitempty"`
	// Since is when the last server of the image became ready: the wait
	// runs from it, until Due. Both zero while the group is not converged
	// and healthy on the image.
	Since time.Time `json:"since,omitzero"`
	Due   time.Time `json:"due,omitzero"`
	// Wait is how long every server must have served healthy: After, or
	// the rollout's watch when that is longer.
	Wait time.Duration `json:"-"`
	// Waiting says why the tag is not added yet; Again, when set, how
	// soon to look again (a record this round writes).
	Waiting string        `json:"waiting,omitempty"`
	Again   time.Duration `json:"-"`
	// Untag is an image the group promoted and then rejected: Tag comes
	// off it, so that no later stage takes it.
	Untag string `json:"untag,omitempty"`
}

// promotion decides a stage's gate from what is stored: the servers'
// ready-at records, the image's tags and the group's own record of what it
// tagged. It is the same for every replica and after any restart, and its
// one step (a tag Glance adds idempotently) cannot harm when taken twice.
// A rollout that halts or rolls back never promotes its image, and an
// image the group rejected after promoting it loses the tag.
func promotion(t Target, d Decision, now time.Time) *Promotion {
	if t.Promote == nil {
		return nil
	}
	p := &Promotion{Tag: t.Promote.Tag, ImageID: t.ImageID, Wait: max(t.Promote.After, t.Watch)}
	if t.PromotedImage.ImageID != "" && t.PromotedImage.Tag == p.Tag && t.Rejected.ImageID == t.PromotedImage.ImageID {
		p.Untag = t.PromotedImage.ImageID
	}
	switch {
	case slices.Contains(t.ImageTags, p.Tag) || t.PromotedImage.ImageID == t.ImageID && t.PromotedImage.Tag == p.Tag:
		p.Done = true
		return p
	case t.RollingBack:
		p.Waiting = fmt.Sprintf("the group is rolling back from image %s, which is never promoted", t.Rejected.ImageID)
		return p
	case t.Halted != "":
		p.Waiting = "the rollout halted: " + t.Halted
		return p
	case !d.Status.Converged:
		p.Waiting = "the group has not converged on the image yet"
		return p
	}
	// Converged, every server serves: healthy for min_ready at least.
	var since time.Time
	for _, c := range d.Servers {
		if c.Kind != KindCurrent {
			continue
		}
		if c.ReadyAt.IsZero() {
			// This round writes it; the next one starts the wait.
			p.Waiting = fmt.Sprintf("server %s is ready, its record not written yet", c.Name)
			p.Again = recordSettle
			return p
		}
		since = latest(since, c.ReadyAt)
	}
	p.Since, p.Due = since, since.Add(p.Wait)
	if now.Before(p.Due) {
		p.Waiting = fmt.Sprintf("the group has run it healthy for %s of %s", Span(now.Sub(since)), Span(p.Wait))
		return p
	}
	p.Now = true
	if t.PromoteFailed != "" {
		p.Waiting = "the last tag failed, trying again: " + t.PromoteFailed
	}
	return p
}

// recordSettle is how soon a stage looks again once a round writes the
// ready records its wait runs from.
const recordSettle = time.Second

// Span writes a duration as people do: 20m, 1h, 1h30m, 45s.
func Span(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
