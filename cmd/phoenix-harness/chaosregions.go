package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// Two-region seeds: a share of the seeds runs the simulator with a second
// region and places a group over both, and draws region outages beside
// the other faults: the second region's API away (SetDown), the first's
// compute answering 503, the second's creates refused (instance quota 0).
// Some outages end before failover_after, some after. The monitor judges
// placed groups by their own rules (chaosregionmon.go).

// The regions of a two-region seed; the primary's Keystone serves both.
const (
	regionOne = "RegionOne"
	regionTwo = "RegionTwo"
)

// failoverAfter is every placed group's placement.failover_after: the
// config's minimum, so that a long outage keeps a seed short.
const failoverAfter = 10 * time.Second

// placedDeadline is a placed group's rollout.progress_deadline: a rollout
// waits out an outage of its location (frozen, nothing created there) and
// the failover after it, which a deadline of an ordinary group would not.
const placedDeadline = slowdown * 40 * time.Second

// Kinds of region outage.
const (
	outageAPI     = "api"     // the region's API away: SetDown, or 503 from compute
	outageCreates = "creates" // the region refuses every create
)

// placement is how a placed group spreads over the seed's regions.
type placement struct {
	weights []int // by region, in sim.Regions order
}

// regionOutage is one outage of a region, at an offset of the chaos.
type regionOutage struct {
	region   string
	kind     string
	at, hold time.Duration
}

func (o regionOutage) describe() string {
	what := map[string]string{outageAPI: "API away", outageCreates: "creates refused (instance quota 0)"}[o.kind]
	if o.kind == outageAPI && o.region == regionOne {
		what = "compute answers 503"
	}
	long := "shorter than failover_after"
	if o.hold > failoverAfter {
		long = "longer than failover_after"
	}
	return fmt.Sprintf("%s: %s for %s (%s)", o.region, what, o.hold.Round(time.Millisecond), long)
}

// regionPlan is the region part of a seed's draw; nil for a seed of one
// region.
type regionPlan struct {
	placed  []chaosGroup
	alone   bool // the placed groups replace the ordinary ones
	outages []regionOutage
}

// drawRegions draws, from a stream of its own (the other draws of a seed
// stay what they were), whether the seed has two regions — one in four —
// and if so its placed groups and outages.
func drawRegions(seed uint64, phase time.Duration) *regionPlan {
	rng := rand.New(rand.NewPCG(seed, 0x4e610))
	if rng.IntN(4) != 0 || !draws[drawRegionsClass] {
		return nil
	}
	p := &regionPlan{alone: rng.IntN(2) == 0}
	n := 1
	if p.alone && rng.IntN(3) == 0 {
		n = 2
	}
	for i := range n {
		g := chaosGroup{name: fmt.Sprintf("r%d", i+1), count: 2 + rng.IntN(5), surge: rng.IntN(3), unavailable: rng.IntN(2), trigger: byWatch,
			placed: &placement{weights: []int{1 + rng.IntN(3), 1 + rng.IntN(3)}}}
		if g.surge == 0 && g.unavailable == 0 {
			g.surge = 1
		}
		if rng.IntN(4) == 0 {
			g.keep = 1 + rng.IntN(2)
		}
		g.rollback = rng.IntN(3) != 0 // on_failure, written: its image never fails
		p.placed = append(p.placed, g)
	}
	// One outage, sometimes two; at most one outlasts failover_after, so
	// that a seed stays short.
	long := rng.IntN(2) == 0
	for range 1 + rng.IntN(2) {
		o := regionOutage{region: regionTwo, kind: outageAPI, at: time.Duration(rng.Int64N(int64(phase)))}
		switch k := rng.IntN(3); {
		case k == 1 && p.alone:
			// The primary's compute: only without ordinary groups, whose
			// rollouts a long 503 would stall past their deadline.
			o.region = regionOne
		case k == 2:
			o.kind = outageCreates
		}
		if long {
			// Past the last kill of the chaos phase by failover_after and
			// more: the location is found down.
			o.hold = failoverAfter + phase + time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
			long = false
		} else {
			o.hold = 300*time.Millisecond + time.Duration(rng.Int64N(int64(4*time.Second)))
		}
		p.outages = append(p.outages, o)
	}
	return p
}

// fleet is the seed's groups: the placed ones beside the ordinary ones, or
// instead of them (and of their steering).
func (p *regionPlan) fleet(groups []chaosGroup, steer steerPlan) ([]chaosGroup, steerPlan) {
	if p == nil {
		return groups, steer
	}
	if p.alone {
		groups, steer = nil, steerPlan{}
	}
	for i := range groups {
		// phoenix protect reads every group of the file, and one-shot
		// commands refuse placed groups; hold and release name theirs.
		groups[i].protect, groups[i].compromiseProtected = 0, false
	}
	return append(groups, p.placed...), steer
}

// simRegions are the simulator's regions besides the primary.
func (p *regionPlan) simRegions() []string {
	if p == nil {
		return nil
	}
	return []string{regionTwo}
}

// steps are the outages as steps of the schedule: each starts at its
// offset and ends by itself (calm waits for it).
func (p *regionPlan) steps() []chaosStep {
	if p == nil {
		return nil
	}
	var steps []chaosStep
	for _, o := range p.outages {
		steps = append(steps, chaosStep{at: o.at, what: o.describe(), do: func(ctx context.Context, r *seedRun) error { return r.outage(ctx, o) }})
	}
	return steps
}

// describe says what a two-region seed draws.
func (p *regionPlan) describe() string {
	if p == nil {
		return ""
	}
	var gs, os []string
	for _, g := range p.placed {
		gs = append(gs, fmt.Sprintf("%s (count %d, max_surge %d, max_unavailable %d, weights %s %d : %s %d)", g.name, g.count, g.surge, g.unavailable,
			regionOne, g.placed.weights[0], regionTwo, g.placed.weights[1]))
	}
	for _, o := range p.outages {
		os = append(os, fmt.Sprintf("%s at %s", o.describe(), o.at.Round(time.Millisecond)))
	}
	alone := "beside the ordinary groups"
	if p.alone {
		alone = "alone"
	}
	return fmt.Sprintf("regions: 2, placed groups %s: %s; outages: %s", alone, strings.Join(gs, ", "), strings.Join(os, "; "))
}

// ordinary are the groups the single-region monitor judges.
func ordinary(groups []chaosGroup) []chaosGroup {
	var out []chaosGroup
	for _, g := range groups {
		if g.placed == nil {
			out = append(out, g)
		}
	}
	return out
}

// regionRun is a two-region seed's state beside seedRun's.
type regionRun struct {
	plan *regionPlan
	// outages waits for the outages under way.
	outages sync.WaitGroup
	// mu guards holds: outages of one kind open per region.
	mu    sync.Mutex
	holds map[string]int
}

// regionSims are the seed's regions, the primary first.
func (r *seedRun) regionSims() []*sim.Sim {
	var out []*sim.Sim
	for _, name := range r.sim.Regions() {
		out = append(out, r.sim.Region(name))
	}
	return out
}

// inFlight counts the requests every region is handling.
func (r *seedRun) inFlight() int {
	n := 0
	for _, s := range r.regionSims() {
		n += s.InFlight()
	}
	return n
}

// outage takes a region down as o says, and brings it back after o.hold
// in the background. The monitor hears of it first, so no sample sees the
// region down and still judged.
func (r *seedRun) outage(ctx context.Context, o regionOutage) error {
	rr := r.regions
	s := r.sim.Region(o.region)
	key := o.region + " " + o.kind
	rr.mu.Lock()
	rr.holds[key]++
	first := rr.holds[key] == 1
	rr.mu.Unlock()
	r.mon.regionOut(o.region, o.kind)
	r.faults++
	if first {
		if err := r.setOutage(s, o, true); err != nil {
			return err
		}
	}
	rr.outages.Add(1)
	go func() {
		defer rr.outages.Done()
		select {
		case <-time.After(o.hold): // the outage's length
		case <-ctx.Done():
		}
		rr.mu.Lock()
		defer rr.mu.Unlock()
		if rr.holds[key]--; rr.holds[key] == 0 {
			_ = r.setOutage(s, o, false)
		}
		r.mon.regionBack(o.region, o.kind, time.Now())
	}()
	return nil
}

// setOutage starts or ends an outage in region s.
func (r *seedRun) setOutage(s *sim.Sim, o regionOutage, on bool) error {
	switch {
	case o.kind == outageCreates && on:
		s.SetQuota(sim.Quota{Instances: 0})
	case o.kind == outageCreates:
		s.SetQuota(sim.Quota{Instances: -1})
	case o.region != regionOne:
		if err := s.SetDown(on); err != nil {
			return fmt.Errorf("region %s: %w", o.region, err)
		}
	case on:
		// The primary stays up: Keystone lives there.
		if err := s.InjectFault(sim.Fault{Service: "compute", Action: sim.FailWith, Status: 503}); err != nil {
			return fmt.Errorf("region %s: %w", o.region, err)
		}
	default:
		// Every fault of the primary goes: calm would clear the rest.
		s.ClearFaults()
	}
	return nil
}

// regionsCalm waits for the outages under way to end.
func (r *seedRun) regionsCalm() {
	if r.regions != nil {
		r.regions.outages.Wait()
	}
}

// quotaWindow tells the monitor of a window of the primary's full quota
// (fullQuota): for a placed group, its creates there fail.
func (r *seedRun) quotaWindow(open bool) {
	if r.regions == nil || r.mon == nil {
		return
	}
	if open {
		r.mon.regionOut(regionOne, outageCreates)
	} else {
		r.mon.regionBack(regionOne, outageCreates, time.Now())
	}
}

// placedYAML is a placed group's entry in the daemon's config, and its
// image in every region.
func (r *seedRun) placedYAML(b *strings.Builder, g chaosGroup) {
	for _, s := range r.regionSims() {
		img := s.AddImage(sim.Image{Name: "gold-" + g.name, Created: time.Now().Add(-time.Hour)})
		r.final[g.name+"@"+s.RegionName()] = img.ID
	}
	fmt.Fprintf(b, `  - name: %s
    count: %d
    image: {name: gold-%s, newest: true}
    flavor: m1.small
    networks: [private]
    rollout: {max_surge: %d, max_unavailable: %d, min_ready: 30ms, progress_deadline: %s, max_failures: %d, on_failure: %s, watch: 1m, create_backoff_max: %s}
    placement:
      failover_after: %s
      locations:
        - {region: %s, weight: %d}
        - {region: %s, weight: %d}
    health:
      http: {port: %d, path: /healthz}
      interval: 100ms
      timeout: 100ms
      healthy_threshold: 2
      unhealthy_threshold: 3
      grace: 3s
`, g.name, g.count, g.name, g.surge, g.unavailable, placedDeadline, g.maxFailures(), g.onFailure(), createBackoffMax,
		failoverAfter, regionOne, g.placed.weights[0], regionTwo, g.placed.weights[1], r.sim.HealthPort())
	if g.keep > 0 {
		fmt.Fprintf(b, "    backup: {snapshot_before_delete: true, keep: %d}\n", g.keep)
	}
}

// publishPlaced publishes a placed group's next image in every region;
// its image watch finds it in each.
func (r *seedRun) publishPlaced(g chaosGroup) {
	for _, s := range r.regionSims() {
		img := s.AddImage(sim.Image{Name: "gold-" + g.name})
		r.mu.Lock()
		r.final[g.name+"@"+s.RegionName()] = img.ID
		r.mu.Unlock()
	}
}

// shares splits count over weights as plan.Place does with every
// location up: the largest remainders take the servers left, ties to
// the first.
func shares(count int, weights []int) []int {
	total := 0
	for _, w := range weights {
		total += w
	}
	out := make([]int, len(weights))
	rem := make([]int, len(weights))
	given := 0
	for i, w := range weights {
		out[i], rem[i] = count*w/total, count*w%total
		given += out[i]
	}
	for ; given < count; given++ {
		best := 0
		for i := range weights {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}

// placedWhyNot says why a placed group is not at its end yet: every
// location up in the daemon's status, each region holding the group's
// share by weight, every server healthy on that region's newest image. ""
// once it is; hopeless when the group gave up. Call with r.mu held.
func (r *seedRun) placedWhyNot(g chaosGroup, gs daemon.GroupStatus, ok bool) (string, bool) {
	switch {
	case !ok:
		return fmt.Sprintf("group %s missing from the daemon's status", g.name), false
	case gs.Halted != "" || gs.RolledBack != "":
		return fmt.Sprintf("placed group %s, whose images do not fail, gave up: %s%s", g.name, gs.Halted, gs.RolledBack), true
	case gs.InProgress:
		return fmt.Sprintf("placed group %s: %s", g.name, gs.Progress), false
	case len(gs.Locations) != len(g.placed.weights):
		return fmt.Sprintf("placed group %s: the daemon's status shows %d locations", g.name, len(gs.Locations)), false
	}
	for _, l := range gs.Locations {
		if l.State != plan.LocationUp {
			return fmt.Sprintf("placed group %s: location %s is %s (%s)", g.name, l.Name, l.State, l.Reason), false
		}
	}
	want := shares(g.count, g.placed.weights)
	for i, s := range r.regionSims() {
		n := 0
		img := r.final[g.name+"@"+s.RegionName()]
		for _, srv := range s.Servers() {
			if groupOfServer(srv) != g.name {
				continue
			}
			n++
			switch {
			case !srv.Healthy || srv.Deleting:
				return fmt.Sprintf("placed group %s: server %s in %s is not healthy (%s)", g.name, srv.Name, s.RegionName(), srv.Status), false
			case srv.ImageID != img:
				return fmt.Sprintf("placed group %s: server %s in %s runs image %s, want %s", g.name, srv.Name, s.RegionName(), srv.ImageID, img), false
			}
		}
		if n != want[i] {
			return fmt.Sprintf("placed group %s has %d servers in %s, want %d of %d by weights %v", g.name, n, s.RegionName(), want[i], g.count, g.placed.weights), false
		}
	}
	return "", false
}

// watchLocations polls the daemon's status for the locations each placed
// group finds down, for the monitor's check that nothing is deleted in a
// down location. A poll that fails (the daemon killed) ends what it saw.
func (r *seedRun) watchLocations() {
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-r.stopWatch:
				return
			case <-t.C:
			}
			// Every live daemon: with replicas, only the owner of a group
			// reports its locations.
			at := time.Now()
			down, out := map[string]string{}, map[string]bool{}
			for _, d := range r.live() {
				st, err := statusOf(d.url)
				if err != nil {
					continue
				}
				for _, g := range st.Groups {
					for _, l := range g.Locations {
						k := g.Group + " " + l.Name
						if l.State == plan.LocationDown && down[k] == "" {
							down[k] = d.url
						}
						out[k] = out[k] || l.State == plan.LocationDown || l.State == plan.LocationRetrying
					}
				}
			}
			r.mon.locationsDown(down, at)
			r.mon.locationsOut(out, at)
		}
	}()
}

// placedServer says whether s belongs to a placed group.
func (r *seedRun) placedServer(s sim.Server) bool {
	for _, g := range r.groups {
		if g.placed != nil && g.name == groupOfServer(s) {
			return true
		}
	}
	return false
}
