package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// Two-stage seeds: a share of the seeds adds a staging group that
// promotes its image with a Glance tag once it has run it healthy for
// promote.after, and a prod group whose selector requires that tag. The
// new image goes to staging alone; it may fail there (halt or rollback),
// and Glance may refuse the tag a few times. The stage judge checks from
// the cloud's own timestamps that prod never created a server of an image
// staging had not run healthy, with its full count, for promote.after.

// The stage seeds' Glance tags: the pipeline's, and the one staging adds.
const (
	stageGold = "stage-gold"
	stageTag  = "staged-ok"
)

// stageRole is a group's part in a two-stage seed.
type stageRole struct {
	// after is staging's promote.after, also its rollout.watch: the wait
	// is the longer of the two, and the watch must outlast the failure
	// of an image that fails after its gate.
	after time.Duration
	// follows is, for prod, the staging group whose tag it requires; ""
	// for staging itself.
	follows string
}

// stagePlan is the stage part of a seed's draw; nil for a seed without.
type stagePlan struct {
	staging, prod chaosGroup
	// refusals is how many times Glance refuses the tag (403) after the
	// chaos phase, when the promotion comes.
	refusals int
}

// drawStages draws, from a stream of its own, whether the seed has two
// stages — one in five — and if so the two groups. A seed whose placed
// groups replace the ordinary ones has none: the primary's compute may
// fail there for longer than an ordinary rollout waits.
func drawStages(seed uint64, regions *regionPlan) *stagePlan {
	rng := rand.New(rand.NewPCG(seed, 0x57a9e))
	if rng.IntN(5) != 0 || !draws[drawStagesClass] || regions != nil && regions.alone {
		return nil
	}
	// 6–9 s: a server of an image failing after its gate is found sick
	// within about 4.3 s of its ACTIVE (grace 3 s, failure ≤ 2 s after
	// its start, three probes), inside the watch with room to spare.
	after := time.Duration(60+rng.IntN(30)) * 100 * time.Millisecond
	staging := chaosGroup{name: "staging", count: 1 + rng.IntN(3), surge: rng.IntN(2), unavailable: rng.IntN(2),
		trigger: []string{byWatch, byImageEvent, byPatchEvent}[rng.IntN(3)], stage: &stageRole{after: after}}
	switch rng.IntN(4) {
	case 0:
		staging.bad = true
	case 1:
		staging.leaky = time.Duration(300+rng.IntN(1700)) * time.Millisecond
	}
	staging.rollback = rng.IntN(3) != 0
	prod := chaosGroup{name: "prod", count: 2 + rng.IntN(4), surge: rng.IntN(3), unavailable: rng.IntN(2),
		traffic: rng.IntN(3) == 0, trigger: byPromotion, stage: &stageRole{after: after, follows: staging.name}}
	for _, g := range []*chaosGroup{&staging, &prod} {
		if g.surge == 0 && g.unavailable == 0 {
			g.surge = 1
		}
	}
	p := &stagePlan{staging: staging, prod: prod}
	if rng.IntN(3) == 0 {
		p.refusals = 1 + rng.IntN(3)
	}
	return p
}

// byPromotion: prod's new image reaches it by staging's tag.
const byPromotion = "staging's promotion"

// fleet is the seed's groups with the two stages added.
func (p *stagePlan) fleet(groups []chaosGroup) []chaosGroup {
	if p == nil {
		return groups
	}
	return append(groups, p.staging, p.prod)
}

// describe says what a two-stage seed draws.
func (p *stagePlan) describe() string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("stages: %s (count %d) promotes with tag %s after %s, %s (count %d) requires it", p.staging.name, p.staging.count,
		stageTag, p.staging.stage.after.Round(time.Millisecond), p.prod.name, p.prod.count)
	if p.refusals > 0 {
		s += fmt.Sprintf("; Glance refuses the tag %d× at first", p.refusals)
	}
	return s
}

// stageSelector is a stage's image selector.
func stageSelector(g chaosGroup) string {
	if g.stage.follows != "" {
		return fmt.Sprintf("{tags: [%s, %s], newest: true}", stageGold, stageTag)
	}
	return fmt.Sprintf("{tags: [%s], newest: true}", stageGold)
}

// stageImage is the image both stages start on: promoted already.
func (r *seedRun) stageImage() string {
	for _, img := range r.sim.Images() {
		if slices.Contains(img.Tags, stageGold) {
			return img.ID
		}
	}
	return r.sim.AddImage(sim.Image{Name: "gold-stage", Tags: []string{stageGold, stageTag}, Created: time.Now().Add(-time.Hour)}).ID
}

// publishStage publishes staging's new image, without the stage tag, and
// tells the daemon as staging's trigger says. Prod must end on it only if
// it does not fail.
func (r *seedRun) publishStage(ctx context.Context, g chaosGroup) error {
	img := r.sim.AddImage(sim.Image{Name: "gold-stage", Tags: []string{stageGold}, BootFails: g.bad, FailsAfter: g.leaky})
	if g.leaky > 0 {
		r.mon.failsAfterGate(img.ID)
	}
	r.mu.Lock()
	switch {
	case g.leaky > 0:
		r.failing[g.name] = img.ID
	case !g.bad:
		for _, s := range r.groups {
			if s.stage != nil {
				r.final[s.name] = img.ID
			}
		}
	}
	r.mu.Unlock()
	return r.announce(ctx, g, img.ID)
}

// refuseTags has Glance refuse the stage tag's next PUTs, after the
// chaos phase (whose end clears every fault): the promotion comes later.
func (r *seedRun) refuseTags() error {
	if r.stages == nil || r.stages.refusals == 0 {
		return nil
	}
	r.faults++
	return r.sim.InjectFault(sim.Fault{Service: "image", Method: "PUT", Path: `/tags/` + stageTag + `$`, Action: sim.FailWith, Status: 403, Times: r.stages.refusals})
}

// stageJudge watches a two-stage seed's servers: when each staging
// server served healthy (from the cloud's own timestamps) and when prod
// first created a server of each image.
type stageJudge struct {
	staging, prod string
	count         int // staging's
	after         time.Duration
	initial       string // both stages start on it, promoted already

	mu      sync.Mutex
	flapped map[string]bool      // staging servers the chaos made sick
	spells  map[string]*spell    // staging server → its healthy spell
	created map[string]time.Time // image → prod's first create of it
}

// spell is a staging server's healthy spell: from when its application
// answered (ActiveAt + HealthDelay: exact) to the first sample that saw
// it sick, deleting or gone (late by a sample at most: the judge errs
// for Phoenix). A health flap of the chaos does not end it: Phoenix's
// wait reads the ready records, not every probe (README, Stages).
type spell struct {
	image    string
	from, to time.Time // to zero: healthy still
}

func newStageJudge(p *stagePlan, initial string) *stageJudge {
	return &stageJudge{staging: p.staging.name, prod: p.prod.name, count: p.staging.count, after: p.staging.stage.after, initial: initial,
		flapped: map[string]bool{}, spells: map[string]*spell{}, created: map[string]time.Time{}}
}

// flap tells the judge the chaos is about to make a server sick.
func (j *stageJudge) flap(id string) {
	j.mu.Lock()
	j.flapped[id] = true
	j.mu.Unlock()
}

// observe takes one sample of the servers, listed at at.
func (j *stageJudge) observe(servers []sim.Server, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	present := map[string]bool{}
	for _, s := range servers {
		switch groupOfServer(s) {
		case j.staging:
			present[s.ID] = true
			sp := j.spells[s.ID]
			switch {
			case sp == nil && s.Healthy && !s.Deleting:
				j.spells[s.ID] = &spell{image: s.ImageID, from: s.ActiveAt.Add(s.HealthDelay)}
			case sp != nil && sp.to.IsZero() && (s.Deleting || !s.Healthy && !j.flapped[s.ID]):
				sp.to = at
			}
		case j.prod:
			if first, ok := j.created[s.ImageID]; s.ImageID != j.initial && (!ok || s.Created.Before(first)) {
				j.created[s.ImageID] = s.Created
			}
		}
	}
	for id, sp := range j.spells {
		if !present[id] && sp.to.IsZero() {
			sp.to = at
		}
	}
}

// violations says where prod created a server of an image before staging
// had served it, with its whole count healthy, for promote.after.
func (j *stageJudge) violations() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for image, created := range j.created {
		if longest := j.servedFor(image, created); longest < j.after {
			out = append(out, fmt.Sprintf("stages: group %s: created a server of image %s when group %s had run it healthy, %d servers, for %s at most (promote.after %s)",
				j.prod, image, j.staging, j.count, longest.Round(time.Millisecond), j.after))
		}
	}
	slices.Sort(out)
	return out
}

// describe says, for each image prod took, how long staging had run it
// healthy by then.
func (j *stageJudge) describe() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for image, created := range j.created {
		out = append(out, fmt.Sprintf("prod's first server of image %s created once staging had run it healthy for %s (promote.after %s)",
			image, j.servedFor(image, created).Round(time.Millisecond), j.after))
	}
	if len(out) == 0 {
		return "prod created no server of a new image"
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// servedFor is the longest span before until in which staging had count
// servers of image healthy at once.
func (j *stageJudge) servedFor(image string, until time.Time) time.Duration {
	type edge struct {
		at   time.Time
		step int
	}
	var edges []edge
	for _, sp := range j.spells {
		if sp.image != image || !sp.from.Before(until) {
			continue
		}
		edges = append(edges, edge{sp.from, 1})
		if !sp.to.IsZero() && sp.to.Before(until) {
			edges = append(edges, edge{sp.to, -1})
		}
	}
	// Ends before starts at one instant: a handover at once is no overlap.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.step - b.step
	})
	var longest time.Duration
	var since time.Time
	up := 0
	for _, e := range edges {
		was := up >= j.count
		up += e.step
		switch {
		case !was && up >= j.count:
			since = e.at
		case was && up < j.count:
			longest = max(longest, e.at.Sub(since))
		}
	}
	if up >= j.count {
		longest = max(longest, until.Sub(since))
	}
	return longest
}
